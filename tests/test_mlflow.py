"""MLflow scoring protocol: every documented body format, JSON, CSV and Parquet, and its errors."""
from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import FEATURES, KNOWN_ROWS, create_app_for_test

from iris_service.protocols import mlflow as mlflow_protocol

DATA = Path(__file__).parent / "data"
ROWS = [row for row, _, _ in KNOWN_ROWS]
#: MLflow's sklearn pyfunc answers estimator.predict(X): the class values of classes_ (0, 1, 2 here).
CLASSES = [index for _, index, _ in KNOWN_ROWS]
EXPECTED = "Expected: " + ", ".join(FEATURES) + "."


def mlflow_error(message: str, code: str = "BAD_REQUEST") -> dict[str, str]:
    """Our error as MLflow's scoring server spells it too: error_code and message next to error."""
    return {"error": message, "error_code": code, "message": message}


@pytest.mark.parametrize("name", ["mlflow_dataframe_split.json", "mlflow_dataframe_records.json",
                                  "mlflow_instances.json", "mlflow_inputs.json"])
def test_documented_json_formats(client, name):
    response = client.post("/invocations", data=(DATA / name).read_bytes(), content_type="application/json")
    assert response.status_code == 200
    assert response.get_json() == {"predictions": CLASSES}


def test_csv_with_header_row(client):
    response = client.post("/invocations", data=(DATA / "mlflow_data.csv").read_bytes(), content_type="text/csv")
    assert response.status_code == 200
    assert response.get_json() == {"predictions": CLASSES}


def test_csv_columns_in_any_order_with_charset(client):
    body = "petal_width,petal_length,sepal_width,sepal_length\r\n" + "".join(
        ",".join(str(v) for v in reversed(row)) + "\r\n" for row in ROWS)
    response = client.post("/invocations", data=body.encode(), content_type="text/csv; charset=utf-8")
    assert response.get_json() == {"predictions": CLASSES}


def test_dataframe_split_columns_in_any_order_with_index(client):
    order = [3, 0, 2, 1]
    body = {"dataframe_split": {"index": [10, 11, 12], "columns": [FEATURES[i] for i in order],
                                "data": [[row[i] for i in order] for row in ROWS]}}
    assert client.post("/invocations", json=body).get_json() == {"predictions": CLASSES}


def test_positional_forms(client):
    assert client.post("/invocations", json={"instances": ROWS}).get_json() == {"predictions": CLASSES}
    assert client.post("/invocations", json={"inputs": ROWS}).get_json() == {"predictions": CLASSES}
    assert client.post("/invocations", json={"dataframe_split": {"data": ROWS}}).get_json() == {"predictions": CLASSES}


def test_params_are_accepted_and_ignored(client):
    body = {"dataframe_records": [dict(zip(FEATURES, ROWS[0], strict=False))], "params": {"top_k": 3}}
    assert client.post("/invocations", json=body).get_json() == {"predictions": [0]}


def test_answers_match_native_predict(client):
    native = client.post("/predict", json={"instances": ROWS}).get_json()
    mlflow = client.post("/invocations", json={"instances": ROWS}).get_json()
    assert mlflow["predictions"] == [p["prediction"] for p in native["predictions"]]


def test_ping_and_version(client):
    ping = client.get("/ping")
    assert ping.status_code == 200 and ping.get_json() == {"status": "ready"}
    version = client.get("/version")
    assert version.status_code == 200
    assert version.mimetype == "text/plain"
    assert version.get_data(as_text=True) == "0.1.0"


def test_ping_is_503_when_the_model_is_not_loaded(app, client):
    app.extensions["iris_service"].dataplane.unload("iris")
    response = client.get("/ping")
    assert response.status_code == 503
    body = response.get_json()
    assert body == {**mlflow_error("Model 'iris' is not loaded: unloaded.", "TEMPORARILY_UNAVAILABLE"),
                    "request_id": response.headers["X-Request-ID"]}


BAD_JSON = [
    pytest.param({"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length"],
                                      "data": [[5.1, 3.5, 1.4]]}},
                 f"Missing column(s): petal_width. {EXPECTED}", id="split-missing"),
    pytest.param({"dataframe_split": {"columns": [*FEATURES, "colour"], "data": [[5.1, 3.5, 1.4, 0.2, 1]]}},
                 f"Unknown column(s): 'colour'. {EXPECTED}", id="split-unknown"),
    pytest.param({"dataframe_split": {"columns": ["sepal_length", "sepal_length", "petal_length", "petal_width"],
                                      "data": [ROWS[0]]}}, "Column 'sepal_length' is given twice.", id="split-dup"),
    pytest.param({"dataframe_split": {"columns": list(FEATURES), "data": [[5.1, 3.5, 1.4]]}},
                 "json.dataframe_split.data: Rows have 3 values but 4 columns are named.", id="split-width"),
    pytest.param({"dataframe_split": {"columns": list(FEATURES), "data": [ROWS[0]], "index": [1, 2]}},
                 "json.dataframe_split.index: Index has 2 labels for 1 rows.", id="split-index"),
    pytest.param({"dataframe_split": {"columns": list(FEATURES), "data": [[5.1, "x", 1.4, 0.2]]}},
                 "json.dataframe_split.data.0.1: Must be a number, not a string.", id="split-string"),
    pytest.param({"dataframe_records": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
                                         "petal_width": 0.2, "colour": 2}]},
                 f"Row 0: unknown column(s): 'colour'. {EXPECTED}", id="records-unknown"),
    pytest.param({"dataframe_records": [dict(zip(FEATURES, ROWS[0], strict=True)), dict(zip(FEATURES[1:], ROWS[0][1:], strict=True))]},
                 f"Row 1: missing column(s): sepal_length. {EXPECTED}", id="records-missing"),
    pytest.param({"inputs": {"sepal_length": [5.1], "sepal_width": [3.5], "petal_length": [1.4]}},
                 f"Row 0: missing column(s): petal_width. {EXPECTED}", id="inputs-missing"),
    pytest.param({"instances": [[5.1, 3.5, 1.4]]},
                 "Expected 4 values per row (sepal_length, sepal_width, petal_length, petal_width), got 3.",
                 id="instances-width"),
    pytest.param({}, "json._schema: Send exactly one of dataframe_split, dataframe_records, instances, inputs.",
                 id="no-format"),
    pytest.param({"instances": ROWS, "inputs": ROWS},
                 "json._schema: Send exactly one of dataframe_split, dataframe_records, instances, inputs; "
                 "got instances, inputs.", id="two-formats"),
    pytest.param({"dataframe_values": ROWS}, "json.dataframe_values: Unknown field.", id="unknown-key"),
]


@pytest.mark.parametrize(("body", "error"), BAD_JSON)
def test_bad_json_bodies_are_400_naming_the_problem(client, body, error):
    response = client.post("/invocations", json=body)
    assert response.status_code == 400
    assert response.get_json() == mlflow_error(error)


BAD_CSV = [
    pytest.param("sepal_length,sepal_width,petal_length\n5.1,3.5,1.4\n",
                 f"Missing column(s): petal_width. {EXPECTED}", id="missing"),
    pytest.param("sepal_length,sepal_width,petal_length,petal_width,colour\n5.1,3.5,1.4,0.2,1\n",
                 f"Unknown column(s): 'colour'. {EXPECTED}", id="unknown"),
    pytest.param("sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,abc,0.2\n",
                 "CSV row 1, column 'petal_length': 'abc' is not a number.", id="text"),
    pytest.param("sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,,0.2\n",
                 "CSV row 1, column 'petal_length': '' is not a number.", id="empty-cell"),
    pytest.param("sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,nan,0.2\n",
                 "CSV row 1, column 'petal_length': 'nan' is not a finite number.", id="nan"),
    pytest.param("sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4\n",
                 "CSV row 1 has 3 values; the header names 4 columns.", id="short-row"),
    pytest.param("sepal_length,sepal_width,petal_length,petal_width\n",
                 "The CSV body has a header row but no rows of values.", id="header-only"),
    pytest.param("", "The CSV body is empty; send a header row and at least one row of values.", id="empty"),
]


@pytest.mark.parametrize(("body", "error"), BAD_CSV)
def test_bad_csv_bodies_are_400(client, body, error):
    response = client.post("/invocations", data=body, content_type="text/csv")
    assert response.status_code == 400
    assert response.get_json() == mlflow_error(error)


def test_csv_must_be_utf8(client):
    response = client.post("/invocations", data=b"\xff\xfe\x00", content_type="text/csv")
    assert response.status_code == 400
    assert response.get_json() == mlflow_error("The CSV body is not UTF-8 text.")


@pytest.mark.parametrize(
    ("method", "kwargs", "status", "error"),
    [
        ("post", {"data": "{bad", "content_type": "application/json"}, 400, None),
        ("post", {"data": "a=1", "content_type": "application/x-www-form-urlencoded"}, 415,
         "Send the body as application/json, text/csv or application/vnd.apache.parquet "
         "(got application/x-www-form-urlencoded)."),
        ("get", {}, 405, "Method GET is not allowed on /invocations."),
    ],
)
def test_http_errors_answer_plain_error(client, method, kwargs, status, error):
    response = getattr(client, method)("/invocations", **kwargs)
    assert response.status_code == status
    body = response.get_json()
    assert list(body) == ["error", "error_code", "message"]
    assert body["error_code"] == "BAD_REQUEST" and body["message"] == body["error"]
    assert body["error"] == error if error else body["error"].startswith("Malformed JSON")


def test_openapi_documents_the_routes(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"/invocations", "/ping", "/version"} <= set(paths)


# -- What MLflow's client and pandas send (issue 17) ---------------------------------------------

PARQUET = "application/vnd.apache.parquet"


def frame(rows=ROWS) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(FEATURES))


def parquet_bytes(data: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    data.to_parquet(buffer)
    return buffer.getvalue()


def small_batch_client(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    return create_app_for_test({"MODEL_PATH": str(iris_artifact), "MAX_BATCH_SIZE": 2}).test_client()


NAN_BODIES = [
    # What MLflow's client writes for a DataFrame: json.dumps(df.to_dict(orient="split")) keeps NaN.
    pytest.param(b'{"dataframe_split": {"index": [0, 1], "columns": ["sepal_length", "sepal_width", '
                 b'"petal_length", "petal_width"], "data": [[5.1, 3.5, 1.4, 0.2], [7.0, NaN, 4.7, 1.4]]}}',
                 "Missing value (NaN) at row 1, column 'sepal_width': the model needs a number in every cell "
                 "(pandas writes a missing value as NaN, which JSON does not allow; fill or drop it before sending).",
                 id="split"),
    pytest.param(b'{"dataframe_split": {"index": [7, 9], "columns": ["sepal_length"], "data": [[5.1], [NaN]]}}',
                 "Missing value (NaN) at row 1 (index 9), column 'sepal_length': the model needs a number in every "
                 "cell (pandas writes a missing value as NaN, which JSON does not allow; fill or drop it before "
                 "sending).", id="split-index-label"),
    pytest.param(b'{"dataframe_records": [{"sepal_length": 5.1}, {"sepal_length": Infinity}]}',
                 "Infinity at row 1, column 'sepal_length' is not a finite number; send finite numbers.",
                 id="records-infinity"),
    pytest.param(b'{"inputs": {"sepal_length": [5.1, -Infinity]}}',
                 "-Infinity at row 1, column 'sepal_length' is not a finite number; send finite numbers.",
                 id="inputs-columns"),
    pytest.param(b'{"instances": [[5.1, 3.5, NaN, 0.2]]}',
                 "Missing value (NaN) at row 0, column 2: the model needs a number in every cell "
                 "(pandas writes a missing value as NaN, which JSON does not allow; fill or drop it before sending).",
                 id="instances"),
    pytest.param(b'{"instances": [[5.1, 3.5, 1.4, 0.2]], "params": {"threshold": NaN}}',
                 "NaN at json.params.threshold is not valid JSON; send a number or null.", id="elsewhere"),
]


@pytest.mark.parametrize(("body", "error"), NAN_BODIES)
def test_nan_literals_name_their_cell(client, body, error):
    response = client.post("/invocations", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == mlflow_error(error)


def test_malformed_json_with_a_nan_in_it_keeps_the_parsers_message(client):
    response = client.post("/invocations", data=b'{"instances": [[NaN, ', content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("Malformed JSON")


def test_csv_with_the_dataframes_index_names_it(client):
    response = client.post("/invocations", data=frame().to_csv(), content_type="text/csv")
    assert response.status_code == 400
    assert response.get_json() == mlflow_error(
        f"Unknown column(s): ''. {EXPECTED} A column without a name looks like the DataFrame's index: leave it "
        "out (DataFrame.to_csv(index=False)) or send it as dataframe_split's 'index'.")


def test_long_unknown_column_names_are_cut(client):
    body = {"dataframe_split": {"columns": [*FEATURES, "x" * 100], "data": [[*ROWS[0], 1.0]]}}
    response = client.post("/invocations", json=body)
    assert response.get_json()["error"] == f"Unknown column(s): '{'x' * 64}... (100 characters)'. {EXPECTED}"


def test_csv_reading_stops_at_the_row_and_column_limits(iris_artifact, tmp_path, monkeypatch):
    client = small_batch_client(iris_artifact, tmp_path, monkeypatch)
    rows = frame(ROWS).to_csv(index=False)
    response = client.post("/invocations", data=rows, content_type="text/csv")
    assert response.get_json() == mlflow_error("At most 2 rows per request; the CSV body has more.")
    wide = ",".join(f"c{i}" for i in range(1025)) + "\n" + ",".join("1" for _ in range(1025)) + "\n"
    response = client.post("/invocations", data=wide, content_type="text/csv")
    # The widest row a four-feature model is sent: four times its features, at least 64 (protocols/bounds.py).
    assert response.get_json() == mlflow_error("CSV line 1 has 1025 fields; at most 64.")


def test_parquet_body_is_scored_and_its_index_left_out(client):
    data = frame()
    assert client.post("/invocations", data=parquet_bytes(data), content_type=PARQUET).get_json() == {
        "predictions": CLASSES}
    data.index = pd.Index([10, 11, 12], name="row_id")  # written as a column, read back as the index
    reordered = data[list(reversed(FEATURES))]
    response = client.post("/invocations", data=parquet_bytes(reordered), content_type=PARQUET)
    assert response.get_json() == {"predictions": CLASSES}


def _nested() -> pd.DataFrame:
    data = frame()
    data["petal_width"] = [[0.2], [1.4], [2.5]]
    return data


BAD_PARQUET = [
    pytest.param(lambda: frame().assign(petal_length=[1.4, None, 6.0]),
                 "Missing value at row 1, column 'petal_length': the model needs a number in every cell.",
                 id="missing"),
    pytest.param(lambda: frame().assign(sepal_width=[3.5, 3.2, float("inf")]),
                 "Row 2, column 'sepal_width': inf is not a finite number.", id="infinite"),
    # pandas 3 writes strings as large_string, pandas 2 as string: the message names what the file holds.
    pytest.param(lambda: frame().assign(colour=["a", "b", "c"]), "Parquet column 'colour' holds ", id="strings"),
    pytest.param(_nested, "Parquet column 'petal_width' holds list<element: double>; every column must hold "
                 "numbers.", id="nested"),
    pytest.param(lambda: frame().assign(colour=[1.0, 2.0, 3.0]),
                 f"Unknown column(s): 'colour'. {EXPECTED}", id="unknown-column"),
    pytest.param(lambda: frame().iloc[:0], "The Parquet file holds no rows of values; send at least one.", id="empty"),
    pytest.param(lambda: pd.DataFrame([[1.0] * 1025]), "The Parquet file names 1025 columns; at most 1024.",
                 id="too-wide"),
    # Three rows whose (index) column unpacks to 3 MB: far more than three rows of numbers need.
    pytest.param(lambda: frame().set_axis(["x" * 1_000_000, "y" * 1_000_000, "z" * 1_000_000]),
                 "The Parquet file unpacks to", id="unpacks-too-much"),
]


@pytest.mark.parametrize(("make", "error"), BAD_PARQUET)
def test_bad_parquet_bodies_are_400(client, make, error):
    data = make()
    data.columns = [str(c) for c in data.columns]
    response = client.post("/invocations", data=parquet_bytes(data), content_type=PARQUET)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"].startswith(error), body
    assert body["error_code"] == "BAD_REQUEST"
    if error.endswith(" holds "):
        assert re.fullmatch(r"Parquet column 'colour' holds (large_)?string; every column must hold numbers\.",
                            body["error"]), body


def test_parquet_is_bounded_by_the_row_limit_before_reading(iris_artifact, tmp_path, monkeypatch):
    client = small_batch_client(iris_artifact, tmp_path, monkeypatch)
    response = client.post("/invocations", data=parquet_bytes(frame()), content_type=PARQUET)
    assert response.get_json() == mlflow_error("At most 2 rows per request; the Parquet file holds 3.")


def test_not_a_parquet_file(client):
    response = client.post("/invocations", data=b"PAR1 but not really", content_type=PARQUET)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("The body is not a readable Parquet file: ")
    empty = client.post("/invocations", data=b"", content_type=PARQUET)
    assert empty.get_json() == mlflow_error(
        "The Parquet body is empty; send a file written by DataFrame.to_parquet().")


def test_parquet_without_pyarrow_is_415_naming_the_extra(client, monkeypatch):
    body = parquet_bytes(frame())
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    response = client.post("/invocations", data=body, content_type=PARQUET)
    assert response.status_code == 415
    assert response.get_json() == mlflow_error(
        "Parquet bodies need pyarrow on the server, from the 'files' extra: pip install 'iris-service[files]' "
        "(from a checkout: pip install -e '.[files]'); or send application/json or text/csv.")


@pytest.mark.parametrize(("status", "code"), [(400, "BAD_REQUEST"), (401, "UNAUTHENTICATED"), (413, "BAD_REQUEST"),
                                              (503, "TEMPORARILY_UNAVAILABLE"), (500, "INTERNAL_ERROR"),
                                              (507, "INTERNAL_ERROR")])
def test_error_codes_are_mlflows(status, code):
    assert mlflow_protocol.error_code(status) == code


def test_api_key_refusal_on_invocations_carries_the_error_code(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    client = create_app_for_test({"MODEL_PATH": str(iris_artifact), "API_KEYS": "k-1"}).test_client()
    response = client.post("/invocations", json={"instances": ROWS})
    assert response.status_code == 401
    assert response.get_json()["error_code"] == "UNAUTHENTICATED"
    assert client.post("/invocations", json={"instances": ROWS}, headers={"X-API-Key": "k-1"}).get_json() == {
        "predictions": CLASSES}


def test_other_protocols_errors_keep_their_shape(client):
    assert client.post("/v1/models/iris:predict", json={}).get_json().keys() == {"error"}
