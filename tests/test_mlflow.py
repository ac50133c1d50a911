"""MLflow scoring protocol: every documented body format, JSON and CSV, and its errors."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FEATURES, KNOWN_ROWS

DATA = Path(__file__).parent / "data"
ROWS = [row for row, _, _ in KNOWN_ROWS]
#: MLflow's sklearn pyfunc answers estimator.predict(X): the class values of classes_ (0, 1, 2 here).
CLASSES = [index for _, index, _ in KNOWN_ROWS]
EXPECTED = "Expected: " + ", ".join(FEATURES) + "."


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
    assert response.get_json()["error"] == "Model 'iris' is not loaded: unloaded."


BAD_JSON = [
    pytest.param({"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length"],
                                      "data": [[5.1, 3.5, 1.4]]}},
                 f"Missing column(s): petal_width. {EXPECTED}", id="split-missing"),
    pytest.param({"dataframe_split": {"columns": [*FEATURES, "colour"], "data": [[5.1, 3.5, 1.4, 0.2, 1]]}},
                 f"Unknown column(s): colour. {EXPECTED}", id="split-unknown"),
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
                 f"Row 0: unknown column(s): colour. {EXPECTED}", id="records-unknown"),
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
    assert response.get_json() == {"error": error}


BAD_CSV = [
    pytest.param("sepal_length,sepal_width,petal_length\n5.1,3.5,1.4\n",
                 f"Missing column(s): petal_width. {EXPECTED}", id="missing"),
    pytest.param("sepal_length,sepal_width,petal_length,petal_width,colour\n5.1,3.5,1.4,0.2,1\n",
                 f"Unknown column(s): colour. {EXPECTED}", id="unknown"),
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
    assert response.get_json() == {"error": error}


def test_csv_must_be_utf8(client):
    response = client.post("/invocations", data=b"\xff\xfe\x00", content_type="text/csv")
    assert response.status_code == 400
    assert response.get_json() == {"error": "The CSV body is not UTF-8 text."}


@pytest.mark.parametrize(
    ("method", "kwargs", "status", "error"),
    [
        ("post", {"data": "{bad", "content_type": "application/json"}, 400, None),
        ("post", {"data": "a=1", "content_type": "application/x-www-form-urlencoded"}, 415,
         "Send the body as application/json or text/csv (got application/x-www-form-urlencoded)."),
        ("get", {}, 405, "Method GET is not allowed on /invocations."),
    ],
)
def test_http_errors_answer_plain_error(client, method, kwargs, status, error):
    response = getattr(client, method)("/invocations", **kwargs)
    assert response.status_code == status
    body = response.get_json()
    assert list(body) == ["error"]
    assert body["error"] == error if error else body["error"].startswith("Malformed JSON")


def test_openapi_documents_the_routes(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"/invocations", "/ping", "/version"} <= set(paths)
