"""Open Inference Protocol (V2): health, metadata, JSON and binary inference, repository, errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FEATURES, KNOWN_ROWS, create_app_for_test

DATA = Path(__file__).parent / "data"
ROWS = [row for row, _, _ in KNOWN_ROWS]
CLASSES = [index for _, index, _ in KNOWN_ROWS]
TOKEN = "s3cret-admin-token"


def tensor(data, shape=(3, 4), datatype="FP64", name="input-0", **extra):
    return {"name": name, "shape": list(shape), "datatype": datatype, "data": data, **extra}


def infer(client, inputs, url="/v2/models/iris/infer", **body):
    return client.post(url, json={"inputs": inputs, **body})


def native_proba(client) -> list[list[float]]:
    body = client.post("/predict", json={"instances": ROWS}).get_json()
    return [list(p["probabilities"].values()) for p in body["predictions"]]


def test_server_metadata_and_health(client):
    assert client.get("/v2").get_json() == {
        "name": "iris-service", "version": "0.1.0", "extensions": ["binary_tensor_data", "model_repository"]}
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}


def test_model_metadata(client):
    expected = {
        "name": "iris",
        "versions": ["1"],
        "platform": "sklearn_joblib",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]},
                    {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]}],
        "parameters": {"feature_names": list(FEATURES), "class_names": ["setosa", "versicolor", "virginica"]},
    }
    assert client.get("/v2/models/iris").get_json() == expected
    assert client.get("/v2/models/iris/versions/1").get_json() == expected


def test_model_ready(client):
    assert client.get("/v2/models/iris/ready").get_json() == {"name": "iris", "ready": True}
    assert client.get("/v2/models/iris/versions/1/ready").status_code == 200
    response = client.get("/v2/models/iris/versions/7/ready")
    assert response.status_code == 404
    assert response.get_json() == {"error": "Model 'iris' serves version '1', not '7'."}
    assert client.get("/v2/models/nope/ready").get_json() == {"error": "No model named 'nope'; known models: iris."}


def test_unloaded_model_is_not_ready(app, client):
    app.extensions["iris_service"].dataplane.unload("iris")
    assert client.get("/v2/models/iris/ready").status_code == 503
    response = client.get("/v2/health/ready")
    assert response.status_code == 503
    assert response.get_json()["error"] == "Not ready: model(s) iris not loaded."
    assert infer(client, [tensor(ROWS)]).status_code == 503


def test_kserve_documented_request(client):
    response = client.post("/v2/models/iris/infer", data=(DATA / "v2_kserve_iris.json").read_bytes(),
                           content_type="application/json")
    assert response.status_code == 200
    assert response.get_json() == {
        "model_name": "iris", "model_version": "1",
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [2], "data": [1, 1]}],
    }


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64", "INT32", "INT64", "UINT8"])
@pytest.mark.parametrize("layout", ["flat", "nested"])
def test_each_datatype_flat_or_nested(client, datatype, layout):
    rows = [[5, 3, 1, 0], [7, 3, 5, 1], [6, 3, 6, 2]] if datatype[0] in "IU" else ROWS
    data = [v for row in rows for v in row] if layout == "flat" else rows
    response = infer(client, [tensor(data, datatype=datatype)])
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["outputs"][0]["data"] == CLASSES


def test_predict_and_proba_equal_native_answers(client):
    body = infer(client, [tensor(ROWS)], id="abc-1",
                 outputs=[{"name": "predict_proba"}, {"name": "predict"}]).get_json()
    assert body["id"] == "abc-1"
    proba, predict = body["outputs"]
    assert proba["name"] == "predict_proba" and proba["datatype"] == "FP64" and proba["shape"] == [3, 3]
    assert np.array(proba["data"]).reshape(3, 3).tolist() == native_proba(client)
    assert predict["data"] == CLASSES


def test_optional_fields_kserve_and_mlserver_accept(client):
    """KServe's SDK puts model_name and id in every body; null optionals are accepted as their servers do."""
    body = infer(client, [tensor(ROWS, parameters=None)], id="kserve-7", model_name="iris", model_version="1",
                 parameters={"content_type": "np"}, outputs=None).get_json()
    assert body == {"id": "kserve-7", "model_name": "iris", "model_version": "1",
                    "outputs": [{"name": "predict", "datatype": "INT64", "shape": [3], "data": CLASSES}]}
    nulls = infer(client, [tensor(ROWS)], id=None, model_name=None, model_version=None, parameters=None)
    assert nulls.status_code == 200
    assert "id" not in nulls.get_json()
    versioned = infer(client, [tensor(ROWS)], url="/v2/models/iris/versions/1/infer", model_name="iris",
                      model_version="1")
    assert versioned.get_json()["outputs"][0]["data"] == CLASSES


@pytest.mark.parametrize(("fields", "error"), [
    ({"model_name": "wine"}, "The body's model_name is 'wine' but this request is for model 'iris'."),
    ({"model_version": "2"}, "The body's model_version is '2' but this request is for model version '1'."),
    ({"model_name": 7}, "json.model_name: Not a valid string."),
])
def test_body_naming_another_model_is_400(client, fields, error):
    response = infer(client, [tensor(ROWS)], **fields)
    assert response.status_code == 400
    assert response.get_json() == {"error": error}


def test_binary_request_naming_its_model(client):
    """The header of a binary request is checked the same way (KServe's SDK sends binary by default)."""
    raw = np.array(ROWS, dtype="<f4").tobytes()
    for name, status in (("iris", 200), ("wine", 400)):
        header = json.dumps({"id": "b-1", "model_name": name, "inputs": [
            {"name": "input-0", "shape": [3, 4], "datatype": "FP32",
             "parameters": {"binary_data_size": len(raw)}}]}).encode()
        response = client.post("/v2/models/iris/infer", data=header + raw, content_type="application/octet-stream",
                               headers={"Inference-Header-Content-Length": str(len(header))})
        assert response.status_code == status, response.get_json()
    assert response.get_json()["error"] == "The body's model_name is 'wine' but this request is for model 'iris'."


def test_server_metadata_with_a_trailing_slash(client):
    """The protocol's OpenAPI document spells it GET /v2/."""
    assert client.get("/v2/").get_json() == client.get("/v2").get_json()
    assert client.post("/v2/").status_code == 405


def test_one_input_per_feature(client):
    columns = [tensor([row[i] for row in ROWS], shape=(3,), name=f) for i, f in enumerate(FEATURES)]
    columns[1]["shape"] = [3, 1]
    assert infer(client, list(reversed(columns))).get_json()["outputs"][0]["data"] == CLASSES


def test_versioned_infer(client):
    assert infer(client, [tensor(ROWS)], url="/v2/models/iris/versions/1/infer").status_code == 200
    response = infer(client, [tensor(ROWS)], url="/v2/models/iris/versions/2/infer")
    assert response.status_code == 404
    assert response.get_json() == {"error": "Model 'iris' serves version '1', not '2'."}


def binary_request(client, arrays, header_extra=None, outputs=None, declared=None):
    """Post a binary-extension request: JSON header, then each array's little-endian bytes."""
    inputs = []
    for name, datatype, array in arrays:
        inputs.append({"name": name, "shape": list(array.shape), "datatype": datatype,
                       "parameters": {"binary_data_size": array.nbytes}})
    header = {"inputs": inputs, **(header_extra or {})}
    if outputs is not None:
        header["outputs"] = outputs
    head = json.dumps(header).encode()
    body = head + b"".join(a.tobytes() for _, _, a in arrays)
    return client.post("/v2/models/iris/infer", data=body, content_type="application/octet-stream",
                       headers={"Inference-Header-Content-Length": str(declared or len(head))})


def split_response(response):
    length = int(response.headers["Inference-Header-Content-Length"])
    data = response.get_data()
    return json.loads(data[:length]), data[length:]


@pytest.mark.parametrize(("datatype", "dtype"), [("FP32", "<f4"), ("FP64", "<f8"), ("INT64", "<i8")])
def test_binary_input_json_output(client, datatype, dtype):
    array = np.array(ROWS).astype(dtype) if datatype != "INT64" else np.array([[5, 3, 1, 0]] * 3, dtype=dtype)
    response = binary_request(client, [("input-0", datatype, array)])
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "Inference-Header-Content-Length" not in response.headers
    expected = CLASSES if datatype != "INT64" else [0, 0, 0]
    assert response.get_json()["outputs"][0]["data"] == expected


def test_binary_outputs_follow_the_json_header(client):
    response = binary_request(client, [("input-0", "FP64", np.array(ROWS, dtype="<f8"))],
                              outputs=[{"name": "predict", "parameters": {"binary_data": True}},
                                       {"name": "predict_proba", "parameters": {"binary_data": True}}])
    assert response.status_code == 200
    assert response.mimetype == "application/octet-stream"
    header, tail = split_response(response)
    predict, proba = header["outputs"]
    assert predict == {"name": "predict", "datatype": "INT64", "shape": [3], "parameters": {"binary_data_size": 24}}
    assert proba["parameters"] == {"binary_data_size": 72} and "data" not in proba
    assert np.frombuffer(tail[:24], "<i8").tolist() == CLASSES
    assert np.frombuffer(tail[24:], "<f8").reshape(3, 3).tolist() == native_proba(client)


def test_a_large_batch_has_the_same_numbers_in_json_binary_and_native_answers(client):
    """1,000 rows: the JSON tensors (written straight from the arrays), the binary ones
    and the native answer's rows (spliced JSON bytes) agree to the last bit."""
    rows = np.array([[v + (i % 7) * 0.37 for v in ROWS[i % 3]] for i in range(1000)])
    outputs = [{"name": "predict"}, {"name": "predict_proba"}]
    predict, proba = infer(client, [tensor(rows.ravel().tolist(), shape=rows.shape)], outputs=outputs).get_json()["outputs"]
    binary = binary_request(client, [("input-0", "FP64", rows)],
                            outputs=[{**o, "parameters": {"binary_data": True}} for o in outputs])
    _, tail = split_response(binary)
    native = client.post("/predict", json={"instances": rows.tolist()}).get_json()["predictions"]
    assert proba["shape"] == [1000, 3] and len(set(predict["data"])) == 3
    assert predict["data"] == np.frombuffer(tail[:8000], "<i8").tolist() == [p["prediction"] for p in native]
    assert proba["data"] == np.frombuffer(tail[8000:], "<f8").tolist()
    assert proba["data"] == [v for p in native for v in p["probabilities"].values()]


def test_binary_data_output_parameter_applies_to_unmarked_outputs(client):
    response = infer(client, [tensor(ROWS)], parameters={"binary_data_output": True},
                     outputs=[{"name": "predict"}, {"name": "predict_proba", "parameters": {"binary_data": False}}])
    header, tail = split_response(response)
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 24}
    assert header["outputs"][1]["data"] == pytest.approx(sum(native_proba(client), []), rel=1e-12)
    assert np.frombuffer(tail, "<i8").tolist() == CLASSES


def test_json_without_content_type_is_accepted(client):
    body = json.dumps({"inputs": [tensor(ROWS)]})
    response = client.post("/v2/models/iris/infer", data=body)
    assert response.status_code == 200


ONE = [5.1, 3.5, 1.4, 0.2]
BAD = [
    pytest.param({"inputs": [tensor(ONE[:3], shape=(1, 4))]},
                 "Input 'input-0' has shape [1, 4] (4 values) but its data holds 3.", id="data-length"),
    pytest.param({"inputs": [tensor(ONE, shape=(4,))]}, "Input 'input-0' must have shape [N, 4]; got [4].",
                 id="shape-rank"),
    pytest.param({"inputs": [tensor([1, 2, 3], shape=(1, 3))]}, "Input 'input-0' must have shape [N, 4]; got [1, 3].",
                 id="width"),
    pytest.param({"inputs": [tensor([], shape=(0, 4))]}, "The inputs hold no rows; send at least one.", id="no-rows"),
    pytest.param({"inputs": [tensor(ONE, shape=(1, 4), datatype="BYTES")]},
                 "json.inputs.0.datatype: Must be one of: FP16, FP32, FP64, INT8, INT16, INT32, INT64, UINT8, UINT16, "
                 "UINT32, UINT64.", id="datatype"),
    pytest.param({"inputs": [tensor([5.5, 3, 1, 0], shape=(1, 4), datatype="INT32")]},
                 "Input 'input-0' is INT32; its data must be whole numbers.", id="int-fraction"),
    pytest.param({"inputs": [tensor([300, 3, 1, 0], shape=(1, 4), datatype="INT8")]},
                 "Input 'input-0': a value is out of range for INT8.", id="int-range"),
    pytest.param({"inputs": [tensor([1, 2, "x", 4], shape=(1, 4))]},
                 "Input 'input-0': data must hold numbers only; got \"x\".", id="string"),
    pytest.param({"inputs": [tensor([1, 2, True, 4], shape=(1, 4))]},
                 "Input 'input-0': data must hold numbers only; got true.", id="boolean"),
    pytest.param({"inputs": [tensor([[1, 2], [3]], shape=(1, 3))]},
                 "Input 'input-0': nested data must be a regular array (no ragged or mixed rows).", id="ragged"),
    pytest.param({"inputs": [tensor([1e300, 1, 1, 1], shape=(1, 4), datatype="FP32")]},
                 "Input 'input-0' holds NaN or infinite values; send finite numbers.", id="fp32-overflow"),
    pytest.param({"inputs": [tensor(ONE, shape=(1, 4), name="x")]},
                 "Unknown input(s): x. This model takes 'input-0' with shape [-1, 4], or one input per feature: "
                 "sepal_length, sepal_width, petal_length, petal_width.", id="unknown-input"),
    pytest.param({"inputs": [tensor(ONE, shape=(1, 4)), tensor(ONE, shape=(1, 4))]},
                 "Input 'input-0' is given twice.", id="duplicate-input"),
    pytest.param({"inputs": [tensor([1.0], shape=(1,), name="sepal_length")]},
                 "Missing input(s): sepal_width, petal_length, petal_width. This model takes 'input-0' with shape "
                 "[-1, 4], or one input per feature: sepal_length, sepal_width, petal_length, petal_width.",
                 id="missing-feature-input"),
    pytest.param({"inputs": [tensor(ONE, shape=(1, 4))], "outputs": [{"name": "scores"}]},
                 "json.outputs.0.name: Unknown output 'scores'; choose from predict, predict_proba.",
                 id="unknown-output"),
    pytest.param({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32"}]},
                 "Input 'input-0' has neither data nor a binary_data_size parameter.", id="no-data"),
    pytest.param({"inputs": [tensor(ONE, shape=(1, -4))]}, "json.inputs.0.shape.1: Must be greater than or equal to 0.",
                 id="negative-shape"),
    pytest.param({"inputs": []}, "json.inputs: Shorter than minimum length 1.", id="no-inputs"),
    pytest.param({}, "json.inputs: Missing data for required field.", id="empty"),
]


@pytest.mark.parametrize(("body", "error"), BAD)
def test_bad_requests_are_400_with_error(client, body, error):
    response = client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 400
    assert response.get_json() == {"error": error}


@pytest.mark.parametrize(
    ("declared_size", "header_length", "error"),
    [
        pytest.param(95, None, "Input 'input-0' of shape [3, 4] and datatype FP64 needs 96 bytes of binary data; "
                               "binary_data_size says 95.", id="size-mismatch"),
        pytest.param(None, "abc", "Inference-Header-Content-Length must be a whole number of bytes, not 'abc'.",
                     id="header-length-text"),
        pytest.param(None, "100000", "Inference-Header-Content-Length is 100000 but the body holds", id="too-long"),
    ],
)
def test_bad_binary_requests_are_400(client, declared_size, header_length, error):
    array = np.array(ROWS, dtype="<f8")
    inputs = [{"name": "input-0", "shape": [3, 4], "datatype": "FP64",
               "parameters": {"binary_data_size": declared_size or array.nbytes}}]
    head = json.dumps({"inputs": inputs}).encode()
    response = client.post("/v2/models/iris/infer", data=head + array.tobytes(),
                           headers={"Inference-Header-Content-Length": header_length or str(len(head))})
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(error)


def test_binary_bytes_left_over_are_400(client):
    array = np.array(ROWS, dtype="<f8")
    head = json.dumps({"inputs": [tensor(ROWS)]}).encode()
    response = client.post("/v2/models/iris/infer", data=head + array.tobytes(),
                           headers={"Inference-Header-Content-Length": str(len(head))})
    assert response.status_code == 400
    assert response.get_json() == {"error": "96 bytes of binary data follow the JSON header but the inputs' "
                                            "binary_data_size parameters add up to 0."}


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status"),
    [
        ("post", "/v2/models/iris/infer", {"data": "{bad", "content_type": "application/json"}, 400),
        ("post", "/v2/models/iris/infer", {"data": "x", "content_type": "text/plain"}, 415),
        ("post", "/v2/models/nope/infer", {"json": {"inputs": [tensor(ROWS)]}}, 404),
        ("get", "/v2/models/iris/infer", {}, 405),
        ("get", "/v2/nothing", {}, 404),
        ("delete", "/v2", {}, 405),
    ],
)
def test_http_errors_answer_plain_error(client, method, url, kwargs, status):
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status
    assert list(response.get_json()) == ["error"]


def test_max_batch_size_applies(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    client = create_app_for_test({"MODEL_PATH": str(iris_artifact), "MAX_BATCH_SIZE": 2}).test_client()
    response = infer(client, [tensor(ROWS)])
    assert response.status_code == 400
    assert response.get_json() == {"error": "At most 2 rows per request; got 3."}


class TestRepository:
    @pytest.fixture
    def app_config(self, iris_artifact):
        return {"TESTING": True, "MODEL_PATH": str(iris_artifact), "ADMIN_TOKEN": TOKEN}

    AUTH = {"Authorization": f"Bearer {TOKEN}"}

    def test_index_lists_models_with_state(self, client):
        response = client.post("/v2/repository/index", headers=self.AUTH)
        assert response.status_code == 200
        assert response.get_json() == [{"name": "iris", "version": "1", "state": "READY", "reason": None}]

    def test_unload_then_load(self, client):
        response = client.post("/v2/repository/models/iris/unload", headers=self.AUTH)
        assert response.get_json() == {"name": "iris", "version": None, "state": "UNAVAILABLE"}
        assert client.get("/v2/models/iris/ready").status_code == 503
        index = client.post("/v2/repository/index", headers=self.AUTH, json={"ready": True}).get_json()
        assert index == []
        full = client.post("/v2/repository/index", headers=self.AUTH, json={}).get_json()
        assert full == [{"name": "iris", "version": None, "state": "UNAVAILABLE", "reason": "unloaded"}]
        response = client.post("/v2/repository/models/iris/load", headers=self.AUTH)
        assert response.get_json() == {"name": "iris", "version": "1", "state": "READY"}
        assert client.get("/v2/models/iris/ready").status_code == 200

    def test_load_of_unknown_model_is_404(self, client):
        response = client.post("/v2/repository/models/nope/load", headers=self.AUTH)
        assert response.status_code == 404
        assert response.get_json() == {"error": "No model named 'nope'; known models: iris."}

    @pytest.mark.parametrize("url", ["/v2/repository/index", "/v2/repository/models/iris/load",
                                     "/v2/repository/models/iris/unload"])
    @pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
    def test_token_is_required(self, client, url, headers):
        response = client.post(url, headers=headers, data="{not even json")
        assert response.status_code == 401
        assert response.get_json() == {"error": "Missing or wrong bearer token."}
        assert client.get("/v2/models/iris/ready").status_code == 200


@pytest.mark.parametrize("url", ["/v2/repository/index", "/v2/repository/models/iris/unload"])
def test_repository_is_hidden_without_admin_token(client, url):
    response = client.post(url)
    assert response.status_code == 404
    assert response.get_json() == {"error": f"No route for POST {url}."}
    assert client.get("/v2/models/iris/ready").status_code == 200


def test_openapi_documents_the_routes(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    for path in ["/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/ready",
                 "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer", "/v2/repository/index"]:
        assert path in paths
