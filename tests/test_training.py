"""Training: accuracy, determinism, manifest contents, the three entry points."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from sklearn.datasets import load_iris

from iris_service import training
from iris_service.artifacts import load_verified, manifest_path
from iris_service.cli import main


def test_default_model_is_accurate_on_the_data_set(iris_artifact):
    model = load_verified(iris_artifact).obj
    iris = load_iris()
    accuracy = float((model.predict(iris.data) == iris.target).mean())
    assert accuracy >= 0.95


def test_manifest_describes_the_artifact(iris_artifact):
    manifest = json.loads(manifest_path(iris_artifact).read_text())
    assert manifest["sha256"] == hashlib.sha256(iris_artifact.read_bytes()).hexdigest()
    assert manifest["feature_names"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert manifest["class_names"] == ["setosa", "versicolor", "virginica"]
    assert manifest["estimator"].endswith("LogisticRegression")
    assert manifest["training"]["params"]["max_iter"] == 200
    assert manifest["training"]["seed"] == 42
    assert 0.9 <= manifest["metrics"]["accuracy"] <= 1.0
    assert manifest["versions"]["scikit-learn"]
    assert manifest["created_at"].endswith("+00:00")
    first = manifest["input_schema"][0]
    assert {k: first[k] for k in ("name", "min", "max")} == {"name": "sepal_length", "min": 4.3, "max": 7.9}
    assert len(first["deciles"]) == 9  # the training profile drift tracking reads (tests/test_drift.py)


def test_training_is_deterministic(tmp_path):
    a = training.train(tmp_path / "a.joblib", version="1")
    b = training.train(tmp_path / "b.joblib", version="1")
    assert a.accuracy == b.accuracy
    x = load_iris().data
    ma, mb = load_verified(a.path).obj, load_verified(b.path).obj
    np.testing.assert_array_equal(ma.predict_proba(x), mb.predict_proba(x))


def test_python_m_training_prints_accuracy_and_writes_the_artifact(tmp_path):
    out = tmp_path / "m" / "model.joblib"
    result = subprocess.run([sys.executable, "-m", "training", "--out", str(out), "--version", "7"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "held-out accuracy 0.9" in result.stdout
    assert out.is_file() and manifest_path(out).is_file()
    assert json.loads(manifest_path(out).read_text())["version"] == "7"


def test_iris_service_train_with_model_dir_and_forest(tmp_path):
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["train", "--model", "random_forest", "--n-estimators", "10",
                                       "--model-dir", str(tmp_path), "--version", "3"])
    assert result.exit_code == 0, result.output
    artifact = tmp_path / "iris" / "3" / "model.joblib"
    assert json.loads(manifest_path(artifact).read_text())["estimator"].endswith("RandomForestClassifier")


def test_flask_train_command_is_registered(runner, tmp_path):
    out = tmp_path / "flask" / "model.joblib"
    result = runner.invoke(args=["train", "--out", str(out), "--version", "1"])
    assert result.exit_code == 0, result.output
    assert "held-out accuracy" in result.output
    assert out.is_file()


def test_unknown_model_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="Unknown model 'svm'"):
        training.train(tmp_path / "x.joblib", kind="svm")
