"""ONNX artifacts: exported and checked from sklearn, served without pickle, same answers."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import KNOWN_ROWS, create_app_for_test
from sklearn.datasets import load_iris

from iris_service import training
from iris_service.artifacts import load_verified, manifest_path
from iris_service.cli import main
from iris_service.errors import ArtifactError

IRIS_ROWS = load_iris().data.tolist()


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _register_trusted(source: Path, name: str, root: Path) -> None:
    """Register a pickled estimator as version 1 of ``name`` in the registry at ``root``."""
    result = _invoke("register", str(source), "--name", name, "--version", "1", "--model-dir", str(root), "--trust")
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """iris 1 (logreg) and forest 1 in a registry, both exported to ONNX by the CLI."""
    root = tmp_path_factory.mktemp("onnx") / "models"
    training.train(root / "iris" / "1" / "model.joblib", kind="logreg", name="iris", version="1")
    training.train(root / "forest" / "1" / "model.joblib", kind="random_forest", name="forest", version="1",
                   n_estimators=20)
    for name in ("iris", "forest"):
        result = _invoke("export-onnx", name, "--model-dir", str(root))
        assert result.exit_code == 0, result.output
    return root


def _client(monkeypatch, tmp_path, **config):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    return create_app_for_test(config).test_client()


def test_export_writes_onnx_artifact_and_manifest(model_dir):
    out = model_dir / "iris" / "1" / "model.onnx"
    manifest = json.loads(manifest_path(out).read_text())
    original = json.loads(manifest_path(out.with_suffix(".joblib")).read_text())
    assert manifest["format"] == "onnx" and manifest["source"] == "export-onnx"
    assert manifest["artifact"] == "model.onnx"
    assert manifest["name"] == "iris" and manifest["version"] == "1"
    for key in ("feature_names", "class_names", "classes", "input_schema", "task", "estimator", "metrics"):
        assert manifest[key] == original[key]
    check = manifest["training"]["onnx_export"]
    assert check["rows"] == 150 and check["sample"] == "iris data set"
    assert check["max_abs_diff"] <= 1e-5 and check["from_sha256"] == original["sha256"]
    assert {"onnx", "onnxruntime", "skl2onnx"} <= set(manifest["versions"])


def test_export_cli_reports_the_check(tmp_path):
    root = tmp_path / "models"
    training.train(root / "iris" / "3" / "model.joblib", name="iris", version="3")
    result = _invoke("export-onnx", "iris", "--model-dir", str(root), "--version", "3")
    assert result.exit_code == 0
    assert result.output.startswith("exported iris 3 to ONNX: checked on iris data set, classes equal")
    assert (root / "iris" / "3" / "model.onnx").is_file()


@pytest.mark.parametrize("name", ["iris", "forest"])
def test_onnx_serves_without_pickle_and_answers_like_sklearn(model_dir, monkeypatch, tmp_path, name):
    onnx_client = _client(monkeypatch, tmp_path, MODEL_DIR=str(model_dir), PICKLE_ALLOWED=False)
    sklearn_client = _client(monkeypatch, tmp_path, MODEL_DIR=str(model_dir))
    assert onnx_client.get(f"/models/{name}").get_json()["format"] == "onnx"
    assert sklearn_client.get(f"/models/{name}").get_json()["format"] == "joblib"
    got = onnx_client.post(f"/models/{name}/predict", json={"instances": IRIS_ROWS}).get_json()
    want = sklearn_client.post(f"/models/{name}/predict", json={"instances": IRIS_ROWS}).get_json()
    assert (got["model"], got["version"]) == (name, "1")
    assert len(got["predictions"]) == 150
    assert [p["prediction"] for p in got["predictions"]] == [p["prediction"] for p in want["predictions"]]
    assert [p["label"] for p in got["predictions"]] == [p["label"] for p in want["predictions"]]
    for g, w in zip(got["predictions"], want["predictions"], strict=True):
        assert g["probabilities"].keys() == w["probabilities"].keys()
        assert max(abs(g["probabilities"][k] - w["probabilities"][k]) for k in w["probabilities"]) <= 1e-5


@pytest.mark.parametrize(("row", "index", "label"), KNOWN_ROWS)
def test_onnx_default_model_answers_predict(model_dir, monkeypatch, tmp_path, row, index, label):
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(model_dir), PICKLE_ALLOWED=False, DEFAULT_MODEL="iris")
    body = client.post("/predict", json={"features": row}).get_json()
    assert (body["prediction"], body["label"]) == (index, label)
    assert type(body["prediction"]) is int and all(type(p) is float for p in body["probabilities"].values())


def test_onnx_model_refuses_bad_input_like_any_other(model_dir, monkeypatch, tmp_path):
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(model_dir), PICKLE_ALLOWED=False)
    response = client.post("/models/iris/predict", json={"features": [1, 2, 3]})
    assert response.status_code == 422


def test_train_format_onnx_writes_only_onnx(tmp_path):
    result = _invoke("train", "--model-dir", str(tmp_path), "--version", "5", "--format", "onnx")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "iris" / "5"
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "model.onnx.json"]
    manifest = json.loads((folder / "model.onnx.json").read_text())
    assert manifest["training"]["onnx_export"]["sample"] == "120 training rows"
    model = load_verified(folder / "model.onnx", pickle_allowed=False)
    assert model.manifest.format == "onnx"


def test_train_refuses_a_file_name_of_another_format(tmp_path):
    with pytest.raises(ValueError, match="A onnx artifact needs a .onnx file name, not model.joblib."):
        training.train(tmp_path / "model.joblib", fmt="onnx")


def test_tampered_onnx_is_refused(model_dir, tmp_path):
    out = tmp_path / "model.onnx"
    shutil.copy(model_dir / "iris" / "1" / "model.onnx", out)
    shutil.copy(manifest_path(model_dir / "iris" / "1" / "model.onnx"), manifest_path(out))
    out.write_bytes(out.read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match="SHA-256 mismatch for model.onnx"):
        load_verified(out)


def test_registered_regressor_exports_with_a_sampled_check(tmp_path):
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    x, y = load_diabetes(return_X_y=True)
    source = tmp_path / "ridge.pkl"
    joblib.dump(Ridge().fit(x, y), source)
    root = tmp_path / "models"
    _register_trusted(source, "ridge", root)
    result = _invoke("export-onnx", "ridge", "--model-dir", str(root))
    assert result.exit_code == 0, result.output
    manifest = json.loads((root / "ridge" / "1" / "model.onnx.json").read_text())
    assert manifest["training"]["onnx_export"]["sample"] == "1000 rows, standard normal"
    model = load_verified(root / "ridge" / "1" / "model.onnx", pickle_allowed=False)
    got = model.obj.run(None, {"input": x[:20].astype(np.float32)})[0][:, 0]
    assert np.allclose(got, Ridge().fit(x, y).predict(x[:20]), atol=1e-3)


def test_export_of_an_unknown_model_is_a_clear_error(tmp_path):
    (tmp_path / "models" / "iris").mkdir(parents=True)
    result = CliRunner().invoke(main, ["export-onnx", "iris", "--model-dir", str(tmp_path / "models")])
    assert result.exit_code == 1
    assert "No versions of 'iris'" in result.output


def test_export_refuses_a_model_skl2onnx_cannot_convert(tmp_path):
    from sklearn.neighbors import NearestCentroid

    x, y = load_iris(return_X_y=True)
    source = tmp_path / "odd.pkl"
    joblib.dump(NearestCentroid().fit(x, y), source)
    root = tmp_path / "models"
    _register_trusted(source, "odd", root)
    result = CliRunner().invoke(main, ["export-onnx", "odd", "--model-dir", str(root)])
    assert result.exit_code == 1
    assert "skl2onnx cannot convert sklearn.neighbors._nearest_centroid.NearestCentroid" in result.output
    assert not (root / "odd" / "1" / "model.onnx").exists()
