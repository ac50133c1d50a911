"""``iris-service register``: notebook models of every shape become served, verified artifacts."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FEATURES, KNOWN_ROWS

from iris_service.artifacts import manifest_path, sha256_bytes
from iris_service.cli import main

#: Column names as pandas users get them from ``load_iris(as_frame=True)``.
FRAME_COLUMNS = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")


def _register(path: Path, *args: str) -> object:
    return CliRunner().invoke(main, ["register", str(path), *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Four models trained the way a notebook would, dumped with joblib, then registered."""
    import pandas as pd
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root = tmp_path_factory.mktemp("notebook")
    models = root / "models"
    x, y = load_iris(return_X_y=True)
    dx, dy = load_diabetes(return_X_y=True)
    frame = pd.DataFrame(x, columns=list(FRAME_COLUMNS))
    fitted = {
        "tutorial": LogisticRegression(max_iter=200).fit(x, y),
        "scaled": make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
        "framed": LogisticRegression(max_iter=200).fit(frame, y),
        "diabetes": Ridge(alpha=1.0).fit(dx, dy),
    }
    outputs = {}
    for name, estimator in fitted.items():
        source = root / f"{name}_model.pkl"
        joblib.dump(estimator, source)  # what the tutorial's notebook does
        outputs[name] = _register(source, "--name", name, "--version", "1", "--model-dir", str(models), "--trust")
    return {"root": root, "models": models, "fitted": fitted, "outputs": outputs, "diabetes_x": dx}


@pytest.fixture
def app_config(notebook):
    return {"MODEL_DIR": str(notebook["models"]), "DEFAULT_MODEL": "tutorial"}


@pytest.mark.parametrize("name", ["tutorial", "scaled", "framed", "diabetes"])
def test_register_succeeds_and_copies_the_bytes_unchanged(notebook, name):
    result = notebook["outputs"][name]
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"registered {name} 1: ")
    target = notebook["models"] / name / "1" / "model.pkl"
    assert target.read_bytes() == (notebook["root"] / f"{name}_model.pkl").read_bytes()
    manifest = json.loads(manifest_path(target).read_text())
    assert manifest["sha256"] == sha256_bytes(target.read_bytes())
    assert manifest["format"] == "pickle" and manifest["source"] == "register"
    assert manifest["name"] == name and manifest["version"] == "1"


def test_classifier_manifest_is_inferred_from_the_estimator(notebook):
    manifest = json.loads((notebook["models"] / "tutorial" / "1" / "model.pkl.json").read_text())
    assert manifest["estimator"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert manifest["task"] == "classification"
    assert manifest["classes"] == [0, 1, 2] and manifest["class_names"] == ["0", "1", "2"]
    assert manifest["feature_names"] == ["x0", "x1", "x2", "x3"]
    assert "registered tutorial 1: sklearn.linear_model._logistic.LogisticRegression (classification, " \
           "4 features, classes 0, 1, 2)" in notebook["outputs"]["tutorial"].output


def test_pipeline_manifest_names_the_pipeline(notebook):
    manifest = json.loads((notebook["models"] / "scaled" / "1" / "model.pkl.json").read_text())
    assert manifest["estimator"] == "sklearn.pipeline.Pipeline"
    assert manifest["task"] == "classification" and manifest["classes"] == [0, 1, 2]


def test_dataframe_feature_names_reach_the_manifest(notebook):
    manifest = json.loads((notebook["models"] / "framed" / "1" / "model.pkl.json").read_text())
    assert manifest["feature_names"] == list(FRAME_COLUMNS)


def test_regressor_manifest(notebook):
    manifest = json.loads((notebook["models"] / "diabetes" / "1" / "model.pkl.json").read_text())
    assert manifest["task"] == "regression"
    assert manifest["classes"] is None and manifest["class_names"] is None
    assert len(manifest["feature_names"]) == 10


@pytest.mark.parametrize("name", ["tutorial", "scaled", "framed"])
@pytest.mark.parametrize(("row", "index", "_label"), KNOWN_ROWS)
def test_registered_classifiers_predict_known_rows(client, name, row, index, _label):
    response = client.post(f"/models/{name}/predict", json={"features": row})
    assert response.status_code == 200
    body = response.get_json()
    assert body["prediction"] == index and body["label"] == str(index)
    assert body["model"] == name and body["version"] == "1"


def test_registered_pipeline_answers_like_the_estimator(client, notebook):
    rows = [r for r, _, _ in KNOWN_ROWS]
    body = client.post("/models/scaled/predict", json={"instances": rows}).get_json()
    expected = notebook["fitted"]["scaled"].predict_proba(np.array(rows))
    got = [[p["probabilities"][c] for c in ("0", "1", "2")] for p in body["predictions"]]
    assert np.allclose(got, expected, rtol=0, atol=1e-12)


def test_dataframe_model_takes_named_features(client):
    named = dict(zip(FRAME_COLUMNS, KNOWN_ROWS[1][0], strict=True))
    response = client.post("/models/framed/predict", json={"features": named})
    assert response.status_code == 200
    assert response.get_json()["prediction"] == 1
    positional = client.post("/models/framed/predict", json={"features": KNOWN_ROWS[1][0]}).get_json()
    assert positional["probabilities"] == response.get_json()["probabilities"]


def test_dataframe_model_refuses_the_iris_short_names(client):
    response = client.post("/models/framed/predict", json={"features": dict(zip(FEATURES, KNOWN_ROWS[0][0], strict=True))})
    assert response.status_code == 422
    message = response.get_json()["errors"]["json"]["features"][0]
    assert message.startswith("Missing feature(s): sepal length (cm)")


def test_registered_regressor_answers_floats(client, notebook):
    rows = notebook["diabetes_x"][:5]
    expected = notebook["fitted"]["diabetes"].predict(rows)
    body = client.post("/models/diabetes/predict", json={"instances": rows.tolist()}).get_json()
    assert [set(p) for p in body["predictions"]] == [{"prediction"}] * 5
    assert all(type(p["prediction"]) is float for p in body["predictions"])
    assert np.allclose([p["prediction"] for p in body["predictions"]], expected, rtol=1e-12)
    single = client.post("/models/diabetes/predict", json={"features": rows[0].tolist()}).get_json()
    assert single == {"prediction": pytest.approx(expected[0], rel=1e-12), "model": "diabetes", "version": "1"}


def test_register_without_trust_is_refused_and_writes_nothing(tmp_path, notebook):
    result = CliRunner().invoke(main, ["register", str(notebook["root"] / "tutorial_model.pkl"), "--name", "x",
                                       "--model-dir", str(tmp_path / "models")])
    assert result.exit_code == 2
    assert "Loading tutorial_model.pkl runs any code inside it." in result.output
    assert "run again with --trust" in result.output
    assert not (tmp_path / "models").exists()


def test_register_refuses_an_object_without_predict(tmp_path):
    source = tmp_path / "not_a_model.pkl"
    source.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    result = CliRunner().invoke(main, ["register", str(source), "--name", "x", "--version", "1",
                                       "--model-dir", str(tmp_path / "models"), "--trust"])
    assert result.exit_code == 1
    assert "not_a_model.pkl holds a dict, which has no predict()." in result.output
    assert not (tmp_path / "models" / "x" / "1" / "not_a_model.pkl.json").exists()


def test_register_refuses_an_unfitted_estimator(tmp_path):
    from sklearn.linear_model import LogisticRegression

    source = tmp_path / "unfitted.joblib"
    joblib.dump(LogisticRegression(), source)
    result = CliRunner().invoke(main, ["register", str(source), "--name", "x", "--version", "1",
                                       "--model-dir", str(tmp_path / "models"), "--trust"])
    assert result.exit_code == 1
    assert "is it fitted?" in result.output


def test_register_refuses_other_file_types(tmp_path):
    source = tmp_path / "model.txt"
    source.write_text("hello")
    result = CliRunner().invoke(main, ["register", str(source), "--name", "x", "--model-dir", str(tmp_path),
                                       "--trust"])
    assert result.exit_code == 1
    assert "Unknown artifact type '.txt' for model.txt" in result.output


def test_default_version_is_sortable_and_served_newest(tmp_path, notebook):
    source = notebook["root"] / "tutorial_model.pkl"
    models = tmp_path / "models"
    assert _register(source, "--name", "t", "--version", "9", "--model-dir", str(models), "--trust").exit_code == 0
    assert _register(source, "--name", "t", "--version", "10", "--model-dir", str(models), "--trust").exit_code == 0
    from iris_service.serving.registry import ModelSource

    assert ModelSource(name="t", model_dir=models / "t").versions() == ["9", "10"]
