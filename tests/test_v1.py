"""V1 protocol (KServe V1 / TensorFlow Serving REST): documented bodies, readiness, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import FEATURES, KNOWN_ROWS, create_app_for_test

from iris_service.runtime import Prediction

DATA = Path(__file__).parent / "data"
CLASSES = [index for _, index, _ in KNOWN_ROWS]


def post_file(client, name: str):
    return client.post("/v1/models/iris:predict", data=(DATA / name).read_bytes(), content_type="application/json")


def test_kserve_documented_iris_request(client):
    response = post_file(client, "v1_kserve_iris.json")
    assert response.status_code == 200
    assert response.get_json() == {"predictions": [1, 1]}


def test_tf_serving_row_format_with_named_instances(client):
    response = post_file(client, "v1_tfserving_row.json")
    assert response.status_code == 200
    assert response.get_json() == {"predictions": CLASSES}


def test_tf_serving_columnar_format_answers_outputs(client):
    response = post_file(client, "v1_tfserving_columnar.json")
    assert response.status_code == 200
    assert response.get_json() == {"outputs": CLASSES}


def test_columnar_list_of_rows_answers_outputs(client):
    response = client.post("/v1/models/iris:predict", json={"inputs": [row for row, _, _ in KNOWN_ROWS]})
    assert response.get_json() == {"outputs": CLASSES}


def test_predictions_match_native_predict(client):
    rows = [row for row, _, _ in KNOWN_ROWS]
    native = client.post("/predict", json={"instances": rows}).get_json()
    v1 = client.post("/v1/models/iris:predict", json={"instances": rows}).get_json()
    assert v1["predictions"] == [p["prediction"] for p in native["predictions"]]
    assert all(type(p) is int for p in v1["predictions"])


def test_regressor_answers_values(app, client, monkeypatch):
    model = app.extensions["iris_service"].dataplane.model("iris")
    monkeypatch.setattr(model, "predict", lambda x: Prediction(values=np.full(len(x), 1.5)))
    body = client.post("/v1/models/iris:predict", json={"instances": [KNOWN_ROWS[0][0]] * 2}).get_json()
    assert body == {"predictions": [1.5, 1.5]}


def test_model_status(client):
    response = client.get("/v1/models/iris")
    assert response.status_code == 200
    assert response.get_json() == {"name": "iris", "ready": True}


def test_explain_reaches_its_own_route(client):
    """KServe's :explain verb reaches its own route (not a 405 from /models/<name>) and explains every row."""
    response = client.post("/v1/models/iris:explain", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert response.status_code == 200
    assert [row["label"] for row in response.get_json()["explanations"]] == ["setosa"]
    assert client.post("/v1/models/iris:explain").status_code == 415  # the body of :predict is required


def test_explain_of_an_unknown_or_unloaded_model(app, client):
    unknown = client.post("/v1/models/nope:explain", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert unknown.status_code == 404
    assert unknown.get_json() == {"error": "No model named 'nope'; known models: iris."}
    app.extensions["iris_service"].dataplane.unload("iris")
    unloaded = client.post("/v1/models/iris:explain", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert unloaded.status_code == 503
    assert unloaded.get_json()["error"] == "Model 'iris' is not loaded: unloaded."


def test_model_status_after_unload_is_503(app, client):
    app.extensions["iris_service"].dataplane.unload("iris")
    response = client.get("/v1/models/iris")
    assert response.status_code == 503
    assert response.get_json()["error"] == "Model 'iris' is not loaded: unloaded."


ROW = KNOWN_ROWS[0][0]
EXPECTED = "Expected: " + ", ".join(FEATURES) + "."

BAD = [
    pytest.param({}, 400, "json._schema: Send 'instances' (row format) or 'inputs' (columnar format).", id="empty"),
    pytest.param({"instances": [ROW], "inputs": [ROW]}, 400,
                 "json._schema: Send either 'instances' or 'inputs', not both.", id="both"),
    pytest.param({"instances": [[1, 2, 3]]}, 400,
                 "Expected 4 features (sepal_length, sepal_width, petal_length, petal_width), got 3.", id="width"),
    pytest.param({"instances": [[1, 2, "x", 4]]}, 400, "json.instances.0.2: Must be a number, not a string.",
                 id="string"),
    pytest.param({"instances": []}, 400, "json.instances: Must contain at least one row.", id="no-rows"),
    pytest.param({"instances": [dict(zip(FEATURES[:3], ROW, strict=False))]}, 400, f"Missing feature(s): petal_width. {EXPECTED}",
                 id="named-missing"),
    pytest.param({"inputs": {"sepal_length": [1.0, 2.0], "sepal_width": [1.0]}}, 400,
                 "json.inputs.sepal_width: Expected 2 values like the first column, got 1.", id="ragged-columns"),
    pytest.param({"inputs": {"sepal_length": [1.0]}}, 400,
                 f"Missing feature(s): sepal_width, petal_length, petal_width. {EXPECTED}", id="columns-missing"),
    pytest.param({"inputs": {"colour": [1.0], **{f: [1.0] for f in FEATURES}}}, 400,
                 f"Unknown feature(s): colour. {EXPECTED}", id="columns-unknown"),
    pytest.param({"inputs": "1,2,3,4"}, 400,
                 "json.inputs: Must be a list of rows or an object of feature name to a list of numbers.",
                 id="inputs-string"),
    pytest.param({"instances": [ROW], "extra": 1}, 400, "json.extra: Unknown field.", id="unknown-key"),
]


@pytest.mark.parametrize(("body", "status", "error"), BAD)
def test_bad_bodies_answer_plain_error(client, body, status, error):
    response = client.post("/v1/models/iris:predict", json=body)
    assert response.status_code == status
    assert response.get_json() == {"error": error}


@pytest.mark.parametrize(
    ("request_args", "status", "error"),
    [
        pytest.param(("post", "/v1/models/nope:predict", {"json": {"instances": [ROW]}}), 404,
                     "No model named 'nope'; known models: iris.", id="unknown-model"),
        pytest.param(("get", "/v1/models/nope", {}), 404, "No model named 'nope'; known models: iris.",
                     id="unknown-model-status"),
        pytest.param(("post", "/v1/models/iris:predict", {"data": "{bad", "content_type": "application/json"}), 400,
                     None, id="malformed"),
        pytest.param(("post", "/v1/models/iris:predict", {"data": "x", "content_type": "text/plain"}), 415,
                     "Send the body as application/json (got text/plain).", id="media-type"),
        pytest.param(("get", "/v1/nothing", {}), 404, "No route for GET /v1/nothing.", id="no-route"),
        pytest.param(("delete", "/v1/models/iris", {}), 405, "Method DELETE is not allowed on /v1/models/iris.",
                     id="method"),
    ],
)
def test_http_errors_answer_plain_error(client, request_args, status, error):
    method, url, kwargs = request_args
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status
    body = response.get_json()
    assert list(body) == ["error"]
    if error is None:
        assert body["error"].startswith("Malformed JSON")
    else:
        assert body["error"] == error


def test_body_too_large_is_413_plain(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "MAX_CONTENT_LENGTH": 1000})
    response = app.test_client().post("/v1/models/iris:predict", json={"instances": [ROW] * 100})
    assert response.status_code == 413
    assert response.get_json() == {"error": "The request body is larger than the limit of 1000 bytes."}


def test_openapi_documents_the_route(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert "post" in paths["/v1/models/{name}:predict"]
    assert "get" in paths["/v1/models/{name}"]


def test_v1_and_mlflow_answer_400_for_too_many_rows(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    client = create_app_for_test({"MODEL_PATH": str(iris_artifact), "MAX_BATCH_SIZE": 2}).test_client()
    rows = [[5.1, 3.5, 1.4, 0.2]] * 3
    v1 = client.post("/v1/models/iris:predict", json={"instances": rows})
    mlflow = client.post("/invocations", json={"instances": rows})
    for response in (v1, mlflow):
        assert response.status_code == 400
        assert "At most 2 rows" in response.get_json()["error"]
