"""INPUT_RANGE_POLICY: values outside the training range are served ("allow") or refused ("reject").

The Iris training ranges are sepal_length 4.3-7.9, sepal_width 2.0-4.4,
petal_length 1.0-6.9 and petal_width 0.1-2.5. Every protocol goes through the
same check; native routes answer 422 with the field errors, V1/V2/MLflow 400
with one message naming the row and the feature.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FEATURES, KNOWN_ROWS, create_app_for_test

from iris_service.settings import ConfigError

ROW = KNOWN_ROWS[0][0]  # setosa: [5.1, 3.5, 1.4, 0.2]
FAR = [5.1, 3.5, 500, 0.2]  # petal_length far above 6.9
PETAL_LENGTH_500 = "Must be between 1.0 and 6.9 (the training range); got 500."


@pytest.fixture
def app_config(iris_artifact: Path) -> dict[str, object]:
    return {"TESTING": True, "MODEL_PATH": str(iris_artifact), "INPUT_RANGE_POLICY": "reject"}


def client_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **config: object):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    return create_app_for_test(config).test_client()


def test_default_policy_serves_out_of_range_values(iris_artifact, tmp_path, monkeypatch):
    client = client_for(tmp_path, monkeypatch, MODEL_PATH=str(iris_artifact))
    assert client.application.config["INPUT_RANGE_POLICY"] == "allow"
    response = client.post("/predict", json={"features": FAR})
    assert response.status_code == 200
    assert response.get_json()["label"] == "virginica"
    batch = client.post("/predict", json={"instances": [ROW, FAR, [-50, 99, 0, 1e6]]})
    assert batch.status_code == 200
    assert len(batch.get_json()["predictions"]) == 3
    assert client.post("/v1/models/iris:predict", json={"instances": [FAR]}).get_json() == {"predictions": [2]}


@pytest.mark.parametrize(("row", "index", "label"), KNOWN_ROWS)
def test_rows_inside_the_ranges_are_served(client, row, index, label):
    response = client.post("/predict", json={"features": row})
    assert response.status_code == 200
    assert response.get_json()["label"] == label


def test_the_range_ends_themselves_are_allowed(client):
    lowest = [4.3, 2.0, 1.0, 0.1]
    highest = [7.9, 4.4, 6.9, 2.5]
    response = client.post("/predict", json={"instances": [lowest, highest]})
    assert response.status_code == 200


def test_single_row_out_of_range_names_feature_and_range(client):
    response = client.post("/predict", json={"features": FAR})
    assert response.status_code == 422
    payload = response.get_json()
    assert payload["errors"] == {"json": {"features": {"petal_length": [PETAL_LENGTH_500]}}}
    assert payload["message"] == f"petal_length: {PETAL_LENGTH_500}"


def test_named_single_row_out_of_range(client):
    response = client.post("/predict", json={"features": dict(zip(FEATURES, FAR, strict=True))})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"json": {"features": {"petal_length": [PETAL_LENGTH_500]}}}


def test_every_bad_feature_of_the_row_is_named_below_and_above(client):
    response = client.post("/predict", json={"features": [4.2, 3.5, 1.4, 2.75]})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"json": {"features": {
        "sepal_length": ["Must be between 4.3 and 7.9 (the training range); got 4.2."],
        "petal_width": ["Must be between 0.1 and 2.5 (the training range); got 2.75."],
    }}}


def test_batch_names_the_first_bad_row(client):
    rows = [ROW, ROW, ROW, FAR, [5.1, 3.5, 1.4, -1]]
    response = client.post("/predict", json={"instances": rows})
    assert response.status_code == 422
    payload = response.get_json()
    assert payload["errors"] == {"json": {"instances": {"3": {"petal_length": [PETAL_LENGTH_500]}}}}
    assert payload["message"] == f"Row 3: petal_length: {PETAL_LENGTH_500}"


def test_batch_of_named_rows_out_of_range(client):
    rows = [dict(zip(FEATURES, r, strict=True)) for r in (ROW, [5.1, 1, 1.4, 0.2])]
    response = client.post("/models/iris/predict", json={"instances": rows})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"json": {"instances": {"1": {
        "sepal_width": ["Must be between 2.0 and 4.4 (the training range); got 1."],
    }}}}


def test_width_errors_come_before_range_errors(client):
    response = client.post("/predict", json={"features": [500, 500, 500]})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"json": {"features": [
        "Expected 4 features (sepal_length, sepal_width, petal_length, petal_width), got 3."
    ]}}


V1_MESSAGE = f"Row 0: petal_length: {PETAL_LENGTH_500}"


@pytest.mark.parametrize("body", [
    pytest.param({"instances": [FAR]}, id="instances"),
    pytest.param({"instances": [dict(zip(FEATURES, FAR, strict=True))]}, id="named-instances"),
    pytest.param({"inputs": [FAR]}, id="inputs-rows"),
    pytest.param({"inputs": {f: [v] for f, v in zip(FEATURES, FAR, strict=True)}}, id="inputs-columns"),
])
def test_v1_answers_400_naming_the_feature(client, body):
    response = client.post("/v1/models/iris:predict", json=body)
    assert response.status_code == 400
    assert response.get_json() == {"error": V1_MESSAGE}


@pytest.mark.parametrize("inputs", [
    pytest.param([{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": [ROW, FAR]}], id="one-tensor"),
    pytest.param([{"name": f, "shape": [2], "datatype": "FP32", "data": [a, b]}
                  for f, a, b in zip(FEATURES, ROW, FAR, strict=True)], id="per-feature"),
])
def test_v2_answers_400_naming_the_feature(client, inputs):
    response = client.post("/v2/models/iris/infer", json={"inputs": inputs})
    assert response.status_code == 400
    assert response.get_json() == {"error": f"Row 1: petal_length: {PETAL_LENGTH_500}"}


def test_v2_binary_tensor_is_checked_too(client):
    array = np.array([FAR], dtype="<f8")
    head = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                                   "parameters": {"binary_data_size": array.nbytes}}]}).encode()
    response = client.post("/v2/models/iris/infer", data=head + array.tobytes(),
                           content_type="application/octet-stream",
                           headers={"Inference-Header-Content-Length": str(len(head))})
    assert response.status_code == 400
    assert response.get_json() == {"error": V1_MESSAGE}


@pytest.mark.parametrize("body", [
    pytest.param({"dataframe_split": {"columns": list(FEATURES), "data": [FAR]}}, id="split"),
    pytest.param({"dataframe_split": {"columns": list(reversed(FEATURES)), "data": [list(reversed(FAR))]}},
                 id="split-reordered"),
    pytest.param({"dataframe_records": [dict(zip(FEATURES, FAR, strict=True))]}, id="records"),
    pytest.param({"instances": [FAR]}, id="instances"),
])
def test_mlflow_answers_400_naming_the_feature(client, body):
    response = client.post("/invocations", json=body)
    assert response.status_code == 400
    assert response.get_json() == {"error": V1_MESSAGE, "error_code": "BAD_REQUEST", "message": V1_MESSAGE}


def test_mlflow_csv_is_checked_too(client):
    csv = ",".join(FEATURES) + "\n" + ",".join(str(v) for v in FAR) + "\n"
    response = client.post("/invocations", data=csv.encode(), content_type="text/csv")
    assert response.status_code == 400
    assert response.get_json() == {"error": V1_MESSAGE, "error_code": "BAD_REQUEST", "message": V1_MESSAGE}


def test_margin_widens_each_range_by_a_fraction_of_it(iris_artifact, tmp_path, monkeypatch):
    client = client_for(tmp_path, monkeypatch, MODEL_PATH=str(iris_artifact),
                        INPUT_RANGE_POLICY="reject", INPUT_RANGE_MARGIN=0.1)
    # petal_length 1.0-6.9 is 5.9 wide: 10% more on each side is 0.41-7.49.
    assert client.post("/predict", json={"features": [5.1, 3.5, 7.4, 0.2]}).status_code == 200
    assert client.post("/predict", json={"features": [5.1, 3.5, 0.5, 0.2]}).status_code == 200
    response = client.post("/predict", json={"features": [5.1, 3.5, 7.5, 0.2]})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"json": {"features": {"petal_length": [
        "Must be between 0.41 and 7.49 (the training range widened by 10% of its width); got 7.5."
    ]}}}


def test_the_margin_is_read_once_at_start(client, app_config):
    """Settings are checked and handed to the data plane at start; a later edit of app.config changes nothing."""
    assert client.post("/predict", json={"features": [5.1, 3.5, 7.4, 0.2]}).status_code == 422
    client.application.config["INPUT_RANGE_MARGIN"] = 0.1
    assert client.post("/predict", json={"features": [5.1, 3.5, 7.4, 0.2]}).status_code == 422
    wider = create_app_for_test({**app_config, "INPUT_RANGE_MARGIN": 0.1}).test_client()
    assert wider.post("/predict", json={"features": [5.1, 3.5, 7.4, 0.2]}).status_code == 200


@pytest.fixture
def partly_known_artifact(iris_artifact: Path, tmp_path: Path) -> Path:
    """The Iris model with petal_length's range unknown and petal_width's max unknown."""
    out = tmp_path / "partly" / "model.joblib"
    out.parent.mkdir()
    shutil.copyfile(iris_artifact, out)
    manifest = json.loads(Path(f"{iris_artifact}.json").read_text())
    for item in manifest["input_schema"]:
        if item["name"] == "petal_length":
            item["min"] = item["max"] = None
        if item["name"] == "petal_width":
            item["max"] = None
    Path(f"{out}.json").write_text(json.dumps(manifest))
    return out


def test_features_with_unknown_ranges_are_not_checked(partly_known_artifact, tmp_path, monkeypatch):
    client = client_for(tmp_path, monkeypatch, MODEL_PATH=str(partly_known_artifact), INPUT_RANGE_POLICY="reject")
    assert client.post("/predict", json={"features": [5.1, 3.5, 500, 40]}).status_code == 200
    response = client.post("/predict", json={"features": [5.1, 3.5, -500, 0.0]})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"json": {"features": {
        "petal_width": ["Must be at least 0.1 (the training range); got 0."],
    }}}
    response = client.post("/predict", json={"features": [9, 3.5, 1.4, 0.2]})
    assert response.get_json()["errors"]["json"]["features"] == {
        "sepal_length": ["Must be between 4.3 and 7.9 (the training range); got 9."],
    }


def test_policy_from_the_environment(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INPUT_RANGE_POLICY", "reject")
    monkeypatch.setenv("IRIS_SERVICE_INPUT_RANGE_MARGIN", "0.5")
    client = client_for(tmp_path, monkeypatch, MODEL_PATH=str(iris_artifact))
    assert client.application.config["INPUT_RANGE_MARGIN"] == 0.5
    assert client.post("/predict", json={"features": [5.1, 3.5, 9.0, 0.2]}).status_code == 200
    assert client.post("/predict", json={"features": FAR}).status_code == 422


@pytest.mark.parametrize(("config", "message"), [
    pytest.param({"INPUT_RANGE_POLICY": "rejct"}, "INPUT_RANGE_POLICY must be 'allow' or 'reject', not 'rejct'.",
                 id="misspelt-policy"),
    pytest.param({"INPUT_RANGE_MARGIN": -0.1}, "INPUT_RANGE_MARGIN must be a number >= 0", id="negative-margin"),
    pytest.param({"INPUT_RANGE_MARGIN": "wide"}, "INPUT_RANGE_MARGIN must be a number >= 0", id="text-margin"),
])
def test_bad_settings_stop_startup(iris_artifact, tmp_path, monkeypatch, config, message):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        create_app_for_test({"MODEL_PATH": str(iris_artifact), **config})


def test_policy_is_case_insensitive(iris_artifact, tmp_path, monkeypatch):
    client = client_for(tmp_path, monkeypatch, MODEL_PATH=str(iris_artifact), INPUT_RANGE_POLICY="Reject")
    assert client.post("/predict", json={"features": FAR}).status_code == 422


def test_page_tells_its_script_the_policy(client):
    page = client.get("/").get_data(as_text=True)
    assert 'data-range-policy="reject"' in page
