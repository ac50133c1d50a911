"""Verified loading: nothing is unpickled unless its manifest vouches for it."""
from __future__ import annotations

import dataclasses
import json
import logging
import pickle
from pathlib import Path

import pytest
from conftest import KNOWN_ROWS, MakesMarker, create_app_for_test

from iris_service.artifacts import (
    dump_joblib,
    load_verified,
    manifest_path,
    read_manifest,
    sha256_bytes,
    write_artifact,
)
from iris_service.errors import ArtifactError


def test_verified_artifact_loads_with_its_manifest(artifact):
    loaded = load_verified(artifact)
    assert loaded.manifest.name == "iris" and loaded.manifest.version == "1"
    assert loaded.obj.predict([KNOWN_ROWS[2][0]]).tolist() == [2]


def test_marker_pickle_runs_code_when_its_hash_matches(tmp_path, artifact):
    # The control for the next test: this payload really does run code on load.
    marker = tmp_path / "ran"
    manifest = read_manifest(artifact)
    evil = tmp_path / "evil.joblib"
    write_artifact(evil, pickle.dumps(MakesMarker(marker)), manifest)
    load_verified(evil)
    assert marker.is_dir()


def test_tampered_artifact_is_refused_before_unpickling(tmp_path, artifact, caplog):
    marker = tmp_path / "ran"
    expected = read_manifest(artifact).sha256
    payload = pickle.dumps(MakesMarker(marker))
    artifact.write_bytes(payload)
    with caplog.at_level(logging.WARNING, logger="iris_service.artifacts"), pytest.raises(ArtifactError) as info:
        load_verified(artifact)
    message = info.value.message
    assert "model.joblib" in message
    # The file's own digest is for the operator's log; answers carry the manifest's only
    # (tests/test_artifact_safety.py: no digest of a file a link leads to is published).
    assert expected in message and sha256_bytes(payload) not in message
    assert any(sha256_bytes(payload) in r.getMessage() for r in caplog.records)
    assert "Refusing to load it" in message
    assert info.value.status == 409
    assert not marker.exists()


def test_one_flipped_byte_is_refused(artifact):
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="SHA-256 mismatch for model.joblib"):
        load_verified(artifact)


def test_missing_manifest_is_a_clear_error(artifact):
    manifest_path(artifact).unlink()
    with pytest.raises(ArtifactError) as info:
        load_verified(artifact)
    assert info.value.message.startswith("No manifest for model.joblib: expected model.joblib.json beside it.")
    assert "iris-service register" in info.value.message


def test_missing_artifact_names_the_file_only(tmp_path):
    with pytest.raises(ArtifactError) as info:
        load_verified(tmp_path / "gone.joblib")
    assert info.value.message.startswith("Model artifact gone.joblib does not exist")
    assert str(tmp_path) not in info.value.message


def _edit_manifest(target: Path, **changes: object) -> None:
    path = manifest_path(target)
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is _DELETE:
            del data[key]
        else:
            data[key] = value
    path.write_text(json.dumps(data))


_DELETE = object()

MALFORMED = [
    pytest.param("{not json", "Manifest model.joblib.json is not valid JSON", id="not-json"),
    pytest.param("[1, 2]", "Manifest model.joblib.json must be a JSON object.", id="array"),
    pytest.param('{"name": "iris"}', "Manifest model.joblib.json is malformed: missing keys: version, artifact",
                 id="missing-keys"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_malformed_manifest_is_a_clear_error(artifact, text, message):
    manifest_path(artifact).write_text(text)
    with pytest.raises(ArtifactError) as info:
        load_verified(artifact)
    assert info.value.message.startswith(message)


@pytest.mark.parametrize(("changes", "message"), [
    pytest.param({"sha256": 12}, "sha256 must be a string", id="sha-type"),
    pytest.param({"sha256": "abc"}, "sha256 must be 64 lowercase hex digits", id="sha-short"),
    pytest.param({"feature_names": "abcd"}, "feature_names must be a non-empty list of strings", id="names-string"),
    pytest.param({"feature_names": []}, "feature_names must be a non-empty list of strings", id="names-empty"),
    pytest.param({"task": "clustering"}, "task must be 'classification' or 'regression'", id="task"),
    pytest.param({"versions": ["1.9"]}, "versions must be an object", id="versions"),
    pytest.param({"format": _DELETE}, "missing keys: format", id="no-format"),
])
def test_manifest_with_wrong_types_is_refused(artifact, changes, message):
    _edit_manifest(artifact, **changes)
    with pytest.raises(ArtifactError, match="Manifest model.joblib.json is malformed: " + message):
        load_verified(artifact)


def test_manifest_describing_another_file_is_refused(artifact):
    _edit_manifest(artifact, artifact="other.joblib")
    with pytest.raises(ArtifactError, match="describes 'other.joblib', not 'model.joblib'"):
        load_verified(artifact)


def test_unknown_format_has_no_loader(artifact):
    _edit_manifest(artifact, format="torch")
    with pytest.raises(ArtifactError, match="No loader for artifact format 'torch'"):
        load_verified(artifact)


def _saved_with_sklearn(artifact: Path, version: str) -> None:
    """Rewrite the manifest as if another scikit-learn saved it (hash recomputed)."""
    manifest = read_manifest(artifact)
    versions = {**manifest.versions, "scikit-learn": version}
    write_artifact(artifact, artifact.read_bytes(), dataclasses.replace(manifest, versions=versions))


def test_other_sklearn_minor_version_is_refused(artifact):
    import sklearn

    _saved_with_sklearn(artifact, "1.0.2")
    with pytest.raises(ArtifactError) as info:
        load_verified(artifact)
    assert info.value.message == (
        f"iris 1 was saved with scikit-learn 1.0.2; this server runs {sklearn.__version__}. "
        "Retrain or re-register it, or set ALLOW_VERSION_MISMATCH to serve it anyway."
    )


def test_other_sklearn_minor_version_is_served_with_a_warning_when_allowed(artifact, caplog):
    _saved_with_sklearn(artifact, "1.0.2")
    with caplog.at_level(logging.WARNING, logger="iris_service.artifacts"):
        loaded = load_verified(artifact, allow_version_mismatch=True)
    assert loaded.obj.predict([KNOWN_ROWS[0][0]]).tolist() == [0]
    assert any("saved with scikit-learn 1.0.2" in r.getMessage() and "ALLOW_VERSION_MISMATCH" in r.getMessage()
               for r in caplog.records)


def test_same_minor_other_patch_version_loads(artifact):
    import sklearn

    major, minor = sklearn.__version__.split(".")[:2]
    _saved_with_sklearn(artifact, f"{major}.{minor}.999")
    assert load_verified(artifact).manifest.versions["scikit-learn"].endswith(".999")


@pytest.fixture
def pickled_by_old_sklearn(artifact, monkeypatch) -> Path:
    """An estimator whose pickle says 1.0.2 inside, while the manifest says today's version.

    So only scikit-learn's own InconsistentVersionWarning can catch it.
    """
    import sklearn.base

    estimator = load_verified(artifact).obj
    monkeypatch.setattr(sklearn.base, "__version__", "1.0.2")
    data = dump_joblib(estimator)
    monkeypatch.undo()
    write_artifact(artifact, data, read_manifest(artifact))
    return artifact


def test_inconsistent_version_warning_refuses_the_pickle(pickled_by_old_sklearn):
    with pytest.raises(ArtifactError) as info:
        load_verified(pickled_by_old_sklearn)
    assert "from version 1.0.2" in info.value.message
    assert "Set ALLOW_VERSION_MISMATCH to serve it anyway." in info.value.message


def test_inconsistent_version_warning_is_logged_when_allowed(pickled_by_old_sklearn, caplog):
    # filterwarnings=error: a warning escaping load_verified would fail this test.
    with caplog.at_level(logging.WARNING, logger="iris_service.artifacts"):
        loaded = load_verified(pickled_by_old_sklearn, allow_version_mismatch=True)
    assert loaded.obj.predict([KNOWN_ROWS[1][0]]).tolist() == [1]
    assert any("from version 1.0.2" in r.getMessage() for r in caplog.records)


def test_pickle_not_allowed_refuses_joblib_before_reading_it(tmp_path, artifact):
    marker = tmp_path / "ran"
    write_artifact(artifact, pickle.dumps(MakesMarker(marker)), read_manifest(artifact))
    with pytest.raises(ArtifactError) as info:
        load_verified(artifact, pickle_allowed=False)
    assert info.value.message == (
        "model.joblib is a joblib artifact and PICKLE_ALLOWED is off; "
        "serve an ONNX or skops artifact instead (iris-service export-onnx)."
    )
    assert not marker.exists()


def test_write_artifact_records_the_digest_of_what_it_wrote(tmp_path, artifact):
    manifest = read_manifest(artifact)
    out = tmp_path / "copy" / "model.joblib"
    written = write_artifact(out, artifact.read_bytes(), manifest)
    assert written.sha256 == sha256_bytes(out.read_bytes())
    assert json.loads(manifest_path(out).read_text())["artifact"] == "model.joblib"
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


# Through the app: a refused artifact is a readiness failure, never a 500.

def test_app_with_version_mismatch_is_not_ready(artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    _saved_with_sklearn(artifact, "1.0.2")
    client = create_app_for_test({"MODEL_PATH": str(artifact)}).test_client()
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert "saved with scikit-learn 1.0.2" in ready.get_json()["errors"]["models"]["iris"]
    predict = client.post("/predict", json={"features": KNOWN_ROWS[0][0]})
    assert predict.status_code == 503 and predict.get_json()["code"] == 503


def test_app_with_version_mismatch_allowed_serves(artifact, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    _saved_with_sklearn(artifact, "1.0.2")
    with caplog.at_level(logging.WARNING):
        client = create_app_for_test({"MODEL_PATH": str(artifact), "ALLOW_VERSION_MISMATCH": True}).test_client()
    assert client.get("/health/ready").status_code == 200
    assert client.post("/predict", json={"features": KNOWN_ROWS[2][0]}).get_json()["prediction"] == 2
    assert any("1.0.2" in r.getMessage() for r in caplog.records)


def test_app_with_pickle_not_allowed_is_not_ready(artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    client = create_app_for_test({"MODEL_PATH": str(artifact), "PICKLE_ALLOWED": False}).test_client()
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert "PICKLE_ALLOWED is off" in response.get_json()["message"]
