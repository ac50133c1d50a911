"""POST /predict: answers on known rows, every input shape, every bad input."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import FEATURES, KNOWN_ROWS, create_app_for_test

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(("row", "index", "label"), KNOWN_ROWS)
def test_known_rows_predict_their_class(client, row, index, label):
    response = client.post("/predict", json={"features": row})
    assert response.status_code == 200
    body = response.get_json()
    assert body["prediction"] == index
    assert type(body["prediction"]) is int
    assert body["label"] == label
    assert set(body["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert math.isclose(sum(body["probabilities"].values()), 1.0, rel_tol=1e-9)
    assert max(body["probabilities"], key=body["probabilities"].get) == label
    assert body["model"] == "iris" and body["version"] == "1"


def test_tutorial_body_from_file_answers_integer_zero(client):
    response = client.post("/predict", data=(DATA / "predict_single.json").read_bytes(),
                           content_type="application/json")
    assert response.status_code == 200
    assert response.get_json()["prediction"] == 0
    assert response.mimetype == "application/json"


def test_named_features_match_positional(client):
    row = KNOWN_ROWS[1][0]
    named = client.post("/predict", json={"features": dict(zip(FEATURES, row, strict=True))}).get_json()
    positional = client.post("/predict", json={"features": row}).get_json()
    assert named == positional


def test_named_features_in_any_order(client):
    row = dict(zip(FEATURES, KNOWN_ROWS[2][0], strict=True))
    reordered = dict(reversed(list(row.items())))
    assert client.post("/predict", json={"features": reordered}).get_json()["prediction"] == 2


def test_batch_answers_in_input_order(client):
    rows = [r for r, _, _ in KNOWN_ROWS] * 3
    response = client.post("/predict", json={"instances": rows})
    assert response.status_code == 200
    body = response.get_json()
    assert [p["prediction"] for p in body["predictions"]] == [0, 1, 2] * 3
    assert [p["label"] for p in body["predictions"]][:3] == ["setosa", "versicolor", "virginica"]
    single = client.post("/predict", json={"features": rows[1]}).get_json()
    assert body["predictions"][1]["probabilities"] == pytest.approx(single["probabilities"], rel=1e-12)
    assert body["model"] == "iris" and body["version"] == "1"


def test_batch_of_named_rows(client):
    rows = [dict(zip(FEATURES, r, strict=True)) for r, _, _ in KNOWN_ROWS]
    body = client.post("/predict", json={"instances": rows}).get_json()
    assert [p["prediction"] for p in body["predictions"]] == [0, 1, 2]


def test_integers_are_accepted_as_numbers(client):
    assert client.post("/predict", json={"features": [5, 3, 1, 0]}).status_code == 200


def test_batch_at_the_limit_is_served(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "MAX_BATCH_SIZE": 5})
    client = app.test_client()
    assert client.post("/predict", json={"instances": [KNOWN_ROWS[0][0]] * 5}).status_code == 200
    response = client.post("/predict", json={"instances": [KNOWN_ROWS[0][0]] * 6})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"json": {"instances": ["At most 5 rows per request; got 6."]}}


def test_default_batch_limit_is_10000(client, app):
    assert app.config["MAX_BATCH_SIZE"] == 10_000
    response = client.post("/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]] * 10_001})
    assert response.status_code == 422
    assert "At most 10000 rows" in response.get_json()["errors"]["json"]["instances"][0]


BAD_BODIES = [
    pytest.param({}, {"json": {"_schema": ["Send 'features' (one row) or 'instances' (a batch)."]}}, id="missing"),
    pytest.param({"features": [1, 2, 3, 4], "instances": [[1, 2, 3, 4]]},
                 {"json": {"_schema": ["Send either 'features' or 'instances', not both."]}}, id="both"),
    pytest.param({"features": [1, 2, 3]}, {"json": {"features": [
        "Expected 4 features (sepal_length, sepal_width, petal_length, petal_width), got 3."]}}, id="too-few"),
    pytest.param({"features": [1, 2, 3, 4, 5]}, {"json": {"features": [
        "Expected 4 features (sepal_length, sepal_width, petal_length, petal_width), got 5."]}}, id="too-many"),
    pytest.param({"features": []}, {"json": {"features": ["Must contain at least one number."]}}, id="empty-row"),
    pytest.param({"features": [1, "2", 3, 4]}, {"json": {"features": {"1": ["Must be a number, not a string."]}}},
                 id="string"),
    pytest.param({"features": [1, 2, True, 4]}, {"json": {"features": {"2": ["Must be a number, not a boolean."]}}},
                 id="boolean"),
    pytest.param({"features": [1, 2, 3, None]}, {"json": {"features": {"3": ["Must be a number, not null."]}}},
                 id="null"),
    pytest.param({"features": [[1, 2, 3, 4]]},
                 {"json": {"features": {"0": ["Must be a number, not a nested list or object."]}}}, id="nested"),
    pytest.param({"features": "5.1,3.5,1.4,0.2"}, {"json": {"features": [
        "Must be a list of numbers or an object of feature name to number."]}}, id="features-string"),
    pytest.param({"instances": []}, {"json": {"instances": ["Must contain at least one row."]}}, id="empty-batch"),
    pytest.param({"instances": [[1, 2, 3, 4], [1, 2, 3]]},
                 {"json": {"instances": {"1": ["Expected 4 values like the first row, got 3."]}}}, id="ragged"),
    pytest.param({"instances": [[1, 2, 3, 4], [1, 2, "x", 4]]},
                 {"json": {"instances": {"1": {"2": ["Must be a number, not a string."]}}}}, id="batch-string"),
    pytest.param({"instances": [[1, 2, 3], [1, 2, 3]]}, {"json": {"instances": [
        "Expected 4 features (sepal_length, sepal_width, petal_length, petal_width), got 3."]}}, id="batch-width"),
    pytest.param({"instances": {"a": 1}}, {"json": {"instances": [
        "Must be a list of rows (lists of numbers or objects of feature name to number)."]}}, id="batch-object"),
    pytest.param({"instances": [[1, 2, 3, 4], {"sepal_length": 1}]},
                 {"json": {"instances": {"1": ["All rows must be lists of numbers (or all objects)."]}}}, id="mixed"),
    pytest.param({"features": {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4}},
                 {"json": {"features": ["Missing feature(s): petal_width. Expected: sepal_length, sepal_width, "
                                        "petal_length, petal_width."]}}, id="named-missing"),
    pytest.param({"features": {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2,
                               "colour": 1}},
                 {"json": {"features": ["Unknown feature(s): colour. Expected: sepal_length, sepal_width, "
                                        "petal_length, petal_width."]}}, id="named-unknown"),
    pytest.param({"features": {"sepal_length": "x"}},
                 {"json": {"features": {"sepal_length": ["Must be a number, not a string."]}}}, id="named-string"),
    pytest.param({"features": [1, 2, 3, 4], "extra": 1}, {"json": {"extra": ["Unknown field."]}}, id="unknown-key"),
    pytest.param([1, 2, 3, 4], {"json": {"_schema": ["Invalid input type."]}}, id="top-level-array"),
]


@pytest.mark.parametrize(("body", "errors"), BAD_BODIES)
def test_bad_bodies_get_422_with_field_errors(client, body, errors):
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    payload = response.get_json()
    assert payload["code"] == 422
    assert payload["status"] == "Unprocessable Entity"
    assert payload["errors"] == errors
    assert payload["message"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e309", "1" + "0" * 400])
def test_non_finite_numbers_are_refused(client, literal):
    response = client.post("/predict", data=f'{{"features": [5.1, 3.5, 1.4, {literal}]}}',
                           content_type="application/json")
    # orjson refuses these at parse time: NaN/Infinity are not JSON, and the
    # others overflow a double.
    assert response.status_code == 400
    payload = response.get_json()
    assert payload["code"] == 400
    assert payload["message"].startswith("Malformed JSON")
    assert payload["errors"] == {"json": ["Invalid JSON body."]}


@pytest.mark.parametrize("data", ["{bad json", '{"features": [1, 2, 3, 4]', "\xff\xfe", "   "])
def test_malformed_json_is_400(client, data):
    response = client.post("/predict", data=data, content_type="application/json")
    assert response.status_code == 400
    payload = response.get_json()
    assert payload["code"] == 400 and payload["status"] == "Bad Request"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_415(client, content_type):
    kwargs = {"content_type": content_type} if content_type else {}
    response = client.post("/predict", data='{"features": [5.1, 3.5, 1.4, 0.2]}', **kwargs)
    assert response.status_code == 415
    assert response.get_json()["code"] == 415


def test_json_with_charset_is_accepted(client):
    response = client.post("/predict", data=json.dumps({"features": [5.1, 3.5, 1.4, 0.2]}),
                           content_type="application/json; charset=utf-8")
    assert response.status_code == 200


def test_body_over_max_content_length_is_413_json(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "MAX_CONTENT_LENGTH": 1000})
    response = app.test_client().post("/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]] * 100})
    assert response.status_code == 413
    payload = response.get_json()
    assert payload["code"] == 413
    assert "1000 bytes" in payload["message"]


def test_unknown_route_is_404_json(client):
    response = client.get("/no/such/route")
    assert response.status_code == 404
    assert response.get_json() == {"code": 404, "status": "Not Found", "message": "No route for GET /no/such/route."}


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_wrong_method_is_405_json_with_allow(client, method):
    response = getattr(client, method)("/predict")
    assert response.status_code == 405
    assert response.get_json()["code"] == 405
    assert "POST" in response.headers["Allow"]


def test_model_error_is_json_500_without_internals(app, client, monkeypatch, caplog):
    model = app.extensions["iris_service"].dataplane.model()

    def broken(x):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(model, "predict", broken)
    response = client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]})
    assert response.status_code == 500
    payload = response.get_json()
    assert payload["code"] == 500
    assert "secret" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert any("secret internal detail" in str(r.exc_info) for r in caplog.records if r.exc_info)


def test_doubled_slashes_are_a_json_404_not_a_redirect(client):
    response = client.post("/models/iris//predict", json={"features": [5.1, 3.5, 1.4, 0.2]})
    assert response.status_code == 404
    assert response.get_json()["code"] == 404
