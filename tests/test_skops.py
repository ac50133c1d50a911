"""skops artifacts: loaded against an explicit allow-list, anything else refused by name."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import KNOWN_ROWS, create_app_for_test
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_iris

from iris_service import training
from iris_service.artifacts import describe_estimator, load_verified, manifest_path, write_artifact
from iris_service.cli import main
from iris_service.errors import ArtifactError

IRIS_ROWS = load_iris().data.tolist()
CUSTOM_TYPE = f"{__name__}.AlwaysSetosa"


class AlwaysSetosa(ClassifierMixin, BaseEstimator):
    """A custom estimator: its type is on no allow-list."""

    def fit(self, x, y):
        self.classes_ = np.unique(y)
        self.n_features_in_ = np.asarray(x).shape[1]
        return self

    def predict(self, x):
        return np.zeros(len(x), dtype=np.int64)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("skops") / "models"
    for kind in ("logreg", "random_forest"):
        for fmt in ("joblib", "skops"):
            training.train(root / kind / "1" / f"model.{fmt}", kind=kind, name=kind, version="1", fmt=fmt,
                           n_estimators=20)
    return root


@pytest.fixture
def custom_artifact(tmp_path: Path) -> Path:
    from skops.io import dumps

    x, y = load_iris(return_X_y=True)
    estimator = AlwaysSetosa().fit(x, y)
    out = tmp_path / "models" / "custom" / "1" / "model.skops"
    write_artifact(out, dumps(estimator), describe_estimator(estimator, name="custom", version="1", fmt="skops"))
    return out


def _client(monkeypatch, tmp_path, **config):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    return create_app_for_test(config).test_client()


@pytest.mark.parametrize("kind", ["logreg", "random_forest"])
def test_skops_serves_without_pickle_and_answers_like_joblib(model_dir, monkeypatch, tmp_path, kind):
    skops_client = _client(monkeypatch, tmp_path, MODEL_DIR=str(model_dir), PICKLE_ALLOWED=False)
    joblib_client = _client(monkeypatch, tmp_path, MODEL_DIR=str(model_dir))
    assert skops_client.get(f"/models/{kind}").get_json()["format"] == "skops"
    got = skops_client.post(f"/models/{kind}/predict", json={"instances": IRIS_ROWS}).get_json()
    want = joblib_client.post(f"/models/{kind}/predict", json={"instances": IRIS_ROWS}).get_json()
    assert got["predictions"] == want["predictions"]
    assert (got["model"], got["version"]) == (kind, "1")


@pytest.mark.parametrize(("row", "index", "label"), KNOWN_ROWS)
def test_skops_default_model_answers_predict(model_dir, monkeypatch, tmp_path, row, index, label):
    client = _client(monkeypatch, tmp_path, MODELS={"iris": str(model_dir / "logreg" / "1" / "model.skops")},
                     PICKLE_ALLOWED=False)
    body = client.post("/predict", json={"features": row}).get_json()
    assert (body["prediction"], body["label"]) == (index, label)


def test_train_format_skops_from_the_cli(tmp_path):
    result = CliRunner().invoke(main, ["train", "--model-dir", str(tmp_path), "--version", "2", "--format", "skops",
                                       "--model", "random_forest", "--n-estimators", "5"])
    assert result.exit_code == 0, result.output
    loaded = load_verified(tmp_path / "iris" / "2" / "model.skops", pickle_allowed=False)
    assert loaded.manifest.format == "skops"
    assert loaded.obj.predict([KNOWN_ROWS[2][0]]).tolist() == [2]


def test_untrusted_type_is_refused_with_the_list(custom_artifact):
    with pytest.raises(ArtifactError) as info:
        load_verified(custom_artifact, pickle_allowed=False)
    assert info.value.message == (
        f"model.skops contains types that are not trusted: {CUSTOM_TYPE}. "
        "Add them to SKOPS_TRUSTED_TYPES only if you trust where the file came from."
    )
    assert info.value.errors == {"untrusted_types": [CUSTOM_TYPE]}


def test_untrusted_type_makes_the_app_not_ready(custom_artifact, monkeypatch, tmp_path):
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(custom_artifact.parents[2]))
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert CUSTOM_TYPE in response.get_json()["errors"]["models"]["custom"]


def test_skops_trusted_types_setting_admits_a_reviewed_type(custom_artifact, monkeypatch, tmp_path):
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(custom_artifact.parents[2]),
                     SKOPS_TRUSTED_TYPES=[CUSTOM_TYPE])
    assert client.get("/health/ready").status_code == 200
    assert client.post("/predict", json={"features": KNOWN_ROWS[2][0]}).get_json()["prediction"] == 0


def test_skops_trusted_types_from_the_environment(custom_artifact, monkeypatch, tmp_path):
    monkeypatch.setenv("IRIS_SERVICE_SKOPS_TRUSTED_TYPES", f"numpy.float16,{CUSTOM_TYPE}")
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(custom_artifact.parents[2]))
    assert client.get("/health/ready").status_code == 200


def test_tampered_skops_is_refused_before_reading(model_dir, tmp_path):
    out = tmp_path / "model.skops"
    shutil.copy(model_dir / "logreg" / "1" / "model.skops", out)
    shutil.copy(manifest_path(model_dir / "logreg" / "1" / "model.skops"), manifest_path(out))
    out.write_bytes(out.read_bytes()[:-10])
    with pytest.raises(ArtifactError, match="SHA-256 mismatch for model.skops"):
        load_verified(out)


def test_skops_file_that_is_not_a_zip_is_a_clear_error(model_dir, tmp_path):
    from iris_service.artifacts import read_manifest

    out = tmp_path / "model.skops"
    manifest = read_manifest(model_dir / "logreg" / "1" / "model.skops")
    write_artifact(out, b"not a zip file", dataclasses.replace(manifest))
    with pytest.raises(ArtifactError, match="Not a readable skops file"):
        load_verified(out)


def test_skops_from_other_sklearn_version_is_refused(model_dir, tmp_path):
    from iris_service.artifacts import read_manifest

    out = tmp_path / "model.skops"
    manifest = read_manifest(model_dir / "logreg" / "1" / "model.skops")
    versions = {**manifest.versions, "scikit-learn": "1.0.2"}
    write_artifact(out, (model_dir / "logreg" / "1" / "model.skops").read_bytes(),
                   dataclasses.replace(manifest, versions=versions))
    with pytest.raises(ArtifactError, match="saved with scikit-learn 1.0.2"):
        load_verified(out)
