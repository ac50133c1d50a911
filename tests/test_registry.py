"""The registry over HTTP: named, versioned models, newest unless pinned, no paths leaked."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import FEATURES, KNOWN_ROWS, create_app_for_test

from iris_service import training
from iris_service.artifacts import manifest_path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """iris 1 (logreg), iris 2 (forest) and iris 10 under MODEL_DIR, plus a model named flower."""
    root = tmp_path_factory.mktemp("registry") / "models"
    training.train(root / "iris" / "1" / "model.joblib", kind="logreg", name="iris", version="1")
    training.train(root / "iris" / "2" / "model.joblib", kind="random_forest", name="iris", version="2",
                   n_estimators=10)
    training.train(root / "iris" / "10" / "model.joblib", kind="logreg", name="iris", version="10", seed=7)
    training.train(root / "flower" / "1" / "model.joblib", kind="random_forest", name="flower", version="1",
                   n_estimators=10)
    return root


@pytest.fixture
def app_config(model_dir):
    return {"MODEL_DIR": str(model_dir), "DEFAULT_MODEL": "iris"}


def _app(monkeypatch, tmp_path, **config):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    return create_app_for_test(config).test_client()


def test_newest_version_is_served_numerically_not_alphabetically(client):
    body = client.post("/predict", json={"features": KNOWN_ROWS[0][0]}).get_json()
    assert body["model"] == "iris" and body["version"] == "10"


def test_pinned_version_is_served(model_dir, monkeypatch, tmp_path):
    client = _app(monkeypatch, tmp_path, MODEL_DIR=str(model_dir), MODEL_VERSIONS={"iris": "2"})
    body = client.post("/models/iris/predict", json={"features": KNOWN_ROWS[2][0]}).get_json()
    assert (body["version"], body["prediction"]) == ("2", 2)
    assert client.get("/models/iris").get_json()["training"]["model"] == "random_forest"


def test_pinned_version_that_does_not_exist_is_not_ready(model_dir, monkeypatch, tmp_path):
    client = _app(monkeypatch, tmp_path, MODEL_DIR=str(model_dir), MODEL_VERSIONS={"iris": "7"})
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.get_json()["errors"]["models"] == {"iris": "Model 'iris' has no version '7'; available: 1, 2, 10."}
    assert client.get("/models/flower").status_code == 200


def test_models_lists_every_model_with_versions(client, model_dir):
    response = client.get("/models")
    assert response.status_code == 200
    body = response.get_json()
    assert body == {
        "default": "iris",
        "models": [
            {"name": "flower", "state": "READY", "version": "1", "versions": ["1"], "default": False},
            {"name": "iris", "state": "READY", "version": "10", "versions": ["1", "2", "10"], "default": True},
        ],
    }
    assert str(model_dir) not in response.get_data(as_text=True)


def test_model_detail_is_the_public_manifest(client, model_dir):
    response = client.get("/models/iris")
    assert response.status_code == 200
    body = response.get_json()
    text = response.get_data(as_text=True)
    assert str(model_dir) not in text and str(model_dir.parent) not in text
    assert "model.joblib" not in text and "artifact" not in body
    assert body["name"] == "iris" and body["version"] == "10"
    assert body["feature_names"] == list(FEATURES) and body["n_features"] == 4
    assert body["class_names"] == ["setosa", "versicolor", "virginica"]
    assert body["task"] == "classification" and body["format"] == "joblib"
    assert body["available_versions"] == ["1", "2", "10"]
    # Ranges, and the training deciles drift tracking compares served rows with (nine, ascending, inside them).
    first, last = body["input_schema"][0], body["input_schema"][3]
    assert (first["name"], first["min"], first["max"]) == ("sepal_length", 4.3, 7.9)
    assert (last["name"], last["min"], last["max"]) == ("petal_width", 0.1, 2.5)
    assert len(first["deciles"]) == 9 and first["deciles"] == sorted(first["deciles"])
    assert 4.3 <= first["deciles"][0] and first["deciles"][-1] <= 7.9
    assert abs(sum(first["decile_shares"]) - 1) < 1e-9
    assert len(body["sha256"]) == 64
    assert set(body["versions"]) >= {"scikit-learn", "numpy", "joblib", "python"}
    assert 0.9 <= body["metrics"]["accuracy"] <= 1.0


def test_every_model_answers_with_its_own_name_and_version(client):
    for name, version in (("iris", "10"), ("flower", "1")):
        single = client.post(f"/models/{name}/predict", json={"features": KNOWN_ROWS[1][0]}).get_json()
        batch = client.post(f"/models/{name}/predict", json={"instances": [KNOWN_ROWS[1][0]]}).get_json()
        assert (single["model"], single["version"]) == (name, version)
        assert (batch["model"], batch["version"]) == (name, version)
        assert single["prediction"] == 1


@pytest.mark.parametrize("path", ["/models/nope", "/models/nope/predict"])
def test_unknown_model_is_404_naming_the_known_models(client, path):
    response = client.post(path, json={"features": KNOWN_ROWS[0][0]}) if path.endswith("predict") \
        else client.get(path)
    assert response.status_code == 404
    body = response.get_json()
    assert body["message"] == "No model named 'nope'; known models: flower, iris."
    assert body["errors"] == {"known_models": ["flower", "iris"]}


def test_bad_input_to_a_named_model_is_422(client):
    response = client.post("/models/flower/predict", json={"features": [1, 2, 3]})
    assert response.status_code == 422
    assert response.get_json()["errors"]["json"]["features"][0].startswith("Expected 4 features")


def test_models_mapping_and_model_path_serve_side_by_side(iris_artifact, forest_artifact, monkeypatch, tmp_path):
    client = _app(monkeypatch, tmp_path, MODEL_PATH=str(iris_artifact), MODELS={"trees": str(forest_artifact)})
    listing = client.get("/models").get_json()
    assert [m["name"] for m in listing["models"]] == ["iris", "trees"] and listing["default"] == "iris"
    assert client.post("/predict", json={"features": KNOWN_ROWS[2][0]}).get_json()["model"] == "iris"
    body = client.post("/models/trees/predict", json={"features": KNOWN_ROWS[2][0]}).get_json()
    assert body["prediction"] == 2 and body["version"] == "1"


def test_default_model_picks_what_predict_uses(model_dir, monkeypatch, tmp_path):
    client = _app(monkeypatch, tmp_path, MODEL_DIR=str(model_dir), DEFAULT_MODEL="flower")
    assert client.post("/predict", json={"features": KNOWN_ROWS[0][0]}).get_json()["model"] == "flower"
    assert client.get("/models").get_json()["default"] == "flower"


def test_pickle_registered_model_is_found_by_its_suffix(iris_artifact, monkeypatch, tmp_path):
    folder = tmp_path / "models" / "iris" / "1"
    folder.mkdir(parents=True)
    # A registered notebook file keeps its .pkl name; the registry must still find it.
    import dataclasses

    from iris_service.artifacts import read_manifest, write_artifact

    manifest = dataclasses.replace(read_manifest(iris_artifact), format="pickle")
    write_artifact(folder / "model.pkl", iris_artifact.read_bytes(), manifest)
    client = _app(monkeypatch, tmp_path, MODEL_DIR=str(tmp_path / "models"))
    assert client.post("/predict", json={"features": KNOWN_ROWS[1][0]}).get_json()["prediction"] == 1


def test_version_folder_without_a_manifest_is_not_ready(model_dir, monkeypatch, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(model_dir / "iris" / "1", root / "iris" / "1")
    manifest_path(root / "iris" / "1" / "model.joblib").unlink()
    client = _app(monkeypatch, tmp_path, MODEL_DIR=str(root))
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.get_json()["errors"]["models"]["iris"] == \
        "No usable artifact with a manifest in version '1'."
    assert str(root) not in response.get_data(as_text=True)
