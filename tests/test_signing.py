"""Signed artifacts: with TRUSTED_KEYS set, only what a trusted key signed is ever read and loaded."""
from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
import requests
from click.testing import CliRunner
from conftest import (
    KNOWN_ROWS,
    MakesMarker,
    create_app_for_test,
    free_port,
    run_server,
    serve_args,
    server_env,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey

from iris_service import create_app
from iris_service.artifacts import load_verified, manifest_path, read_manifest, write_artifact
from iris_service.artifacts.signing import (
    load_private_key,
    load_public_key,
    load_trusted_keys,
    sign_artifact,
    signature_path,
    verify_artifact,
    write_keypair,
)
from iris_service.cli import main
from iris_service.errors import ArtifactError, ConfigError
from iris_service.runtime import from_artifact

SETOSA = KNOWN_ROWS[0][0]  # [5.1, 3.5, 1.4, 0.2] -> class 0
TOKEN = "signing-admin-token"




# Every file this process opens while a test records them (an audit hook cannot be removed,
# so it is installed once and does nothing unless a test holds the list).
_opened: list[str] | None = None
_hooked = False


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], str | bytes):
        _opened.append(os.fsdecode(args[0]))


@pytest.fixture
def opened() -> Iterator[list[str]]:
    """The paths opened during the test: proof of what was, and was not, read."""
    global _opened, _hooked
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked = True
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


@pytest.fixture(autouse=True)
def _no_trusted_keys_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IRIS_SERVICE_TRUSTED_KEYS", raising=False)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two key pairs made by write_keypair (what ``iris-service keygen`` calls)."""
    folder = tmp_path_factory.mktemp("keys")
    ours, ours_pub, _ = write_keypair(folder / "ours.key")
    other, other_pub, _ = write_keypair(folder / "other.key")
    return {"private": ours, "public": ours_pub, "other_private": other, "other_public": other_pub}


@pytest.fixture
def trusted(keys: dict[str, Path]):
    return load_trusted_keys([keys["public"]])




@pytest.fixture
def signed(artifact: Path, keys: dict[str, Path]) -> Path:
    sign_artifact(artifact, load_private_key(keys["private"]))
    return artifact


def _refused(path: Path, trusted, tmp_path: Path, opened: list[str] | None = None) -> str:
    """Load ``path`` with ``trusted``; return the 409's message, checked to name no folder.

    With ``opened``, also check the refusal came before a byte of the artifact was read.
    """
    if opened is not None:
        opened.clear()
    with pytest.raises(ArtifactError) as info:
        load_verified(path, trusted_keys=trusted)
    assert info.value.status == 409
    message = info.value.message
    assert str(tmp_path) not in message and "\n" not in message
    if opened is not None:
        assert str(manifest_path(path)) in opened  # the hook sees what is read...
        assert str(path) not in opened  # ...and the artifact was not
    return message


# Loading.

def test_signed_artifact_loads_and_predicts(signed, trusted):
    loaded = load_verified(signed, trusted_keys=trusted)
    assert loaded.obj.predict([SETOSA]).tolist() == [0]
    signature = json.loads(signature_path(signed).read_text())
    assert signature["algorithm"] == "ed25519"
    assert signature["key_id"] == trusted[0].key_id
    assert len(base64.b64decode(signature["signature"])) == 64


def test_signed_artifact_is_served_by_the_app(signed, keys, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app_for_test({"MODEL_PATH": str(signed), "TRUSTED_KEYS": [str(keys["public"])]})
    response = app.test_client().post("/predict", json={"features": SETOSA})
    assert response.status_code == 200
    assert response.get_json()["prediction"] == 0 and response.get_json()["label"] == "setosa"


def test_openssh_public_key_line_is_trusted_too(signed, keys, tmp_path):
    line = load_public_key(keys["public"]).public_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    ssh = tmp_path / "ours.ssh.pub"
    ssh.write_bytes(line + b" builder@ci\n")
    assert ssh.read_text().startswith("ssh-ed25519 AAAA")
    assert load_verified(signed, trusted_keys=load_trusted_keys([ssh])).obj.predict([SETOSA]).tolist() == [0]


def test_unsigned_artifact_is_refused_before_it_is_read(artifact, trusted, tmp_path, opened):
    # A live payload whose manifest SHA-256 matches: only the missing signature stops it.
    marker = tmp_path / "ran"
    write_artifact(artifact, pickle.dumps(MakesMarker(marker)), read_manifest(artifact))
    message = _refused(artifact, trusted, tmp_path, opened)
    assert message == (
        "model.joblib is not signed: TRUSTED_KEYS is set and model.joblib.sig is missing; "
        "sign it with 'iris-service sign model.joblib --key KEY'."
    )
    assert not marker.exists()


def test_artifact_signed_by_another_key_is_refused(artifact, keys, trusted, tmp_path, opened):
    sign_artifact(artifact, load_private_key(keys["other_private"]))
    other_id = load_public_key(keys["other_public"]).key_id
    message = _refused(artifact, trusted, tmp_path, opened)
    assert message == (
        f"model.joblib is signed by key {other_id[:16]}, which is not in TRUSTED_KEYS; refusing to load it."
    )


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda m: {**m, "version": "2"}, id="version-changed"),
        pytest.param(lambda m: {**m, "feature_names": ["a", "b", "c", "d"]}, id="features-changed"),
        pytest.param(None, id="one-byte-of-whitespace"),
    ],
)
def test_tampered_manifest_is_refused(signed, trusted, tmp_path, opened, edit):
    path = manifest_path(signed)
    if edit is None:
        path.write_bytes(path.read_bytes() + b"\n")  # same JSON, other bytes: still refused
    else:
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    message = _refused(signed, trusted, tmp_path, opened)
    assert message == (
        "Signature model.joblib.sig does not match model.joblib.json: the manifest or the signature "
        "changed after signing. Refusing to load model.joblib."
    )


def test_tampered_artifact_with_a_recomputed_sha256_is_refused_and_never_unpickled(signed, trusted, tmp_path, opened):
    # The attack of issue 17: a malicious pickle and a manifest whose digest matches it.
    marker = tmp_path / "ran"
    write_artifact(signed, pickle.dumps(MakesMarker(marker)), read_manifest(signed))
    assert "does not match model.joblib.json" in _refused(signed, trusted, tmp_path, opened)
    assert not marker.exists()
    # The control: the same files without TRUSTED_KEYS really do run the payload.
    load_verified(signed)
    assert marker.is_dir()


def test_artifact_replaced_under_its_signed_manifest_is_refused_and_never_unpickled(signed, trusted, tmp_path):
    marker = tmp_path / "ran"
    signed.write_bytes(pickle.dumps(MakesMarker(marker)))
    message = _refused(signed, trusted, tmp_path)
    assert message.startswith("SHA-256 mismatch for model.joblib: the manifest says ")
    assert not marker.exists()


def _edit_signature(path: Path, **changes: object) -> None:
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


def _flip_a_bit(encoded: str) -> str:
    raw = bytearray(base64.b64decode(encoded))
    raw[10] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        pytest.param(lambda p, s, k: _edit_signature(p, signature=_flip_a_bit(s["signature"])),
                     "Signature model.joblib.sig does not match model.joblib.json", id="bit-flipped"),
        pytest.param(lambda p, s, k: (sign_artifact(p.with_suffix(""), k["other"]),
                                      _edit_signature(p, key_id=s["key_id"])),
                     "Signature model.joblib.sig does not match model.joblib.json", id="other-key-claims-our-id"),
        pytest.param(lambda p, s, k: p.write_text("{not json"),
                     "Signature model.joblib.sig is malformed: ", id="not-json"),
        pytest.param(lambda p, s, k: _edit_signature(p, algorithm="rsa-pss"),
                     "Signature model.joblib.sig is malformed: algorithm must be 'ed25519', not 'rsa-pss'.",
                     id="other-algorithm"),
        pytest.param(lambda p, s, k: _edit_signature(p, signature=s["signature"][:40]),
                     "Signature model.joblib.sig is malformed: ", id="truncated"),
        pytest.param(lambda p, s, k: _edit_signature(p, key_id="ours"),
                     "Signature model.joblib.sig is malformed: key_id must be 64 lowercase hex digits.",
                     id="bad-key-id"),
        pytest.param(lambda p, s, k: p.write_bytes(b" " * 70_000),
                     "Signature model.joblib.sig is malformed: larger than 65536 bytes.", id="huge"),
    ],
)
def test_tampered_signature_file_is_refused(signed, keys, trusted, tmp_path, opened, tamper, expected):
    path = signature_path(signed)
    tamper(path, json.loads(path.read_text()), {"other": load_private_key(keys["other_private"])})
    assert _refused(signed, trusted, tmp_path, opened).startswith(expected)


def test_a_signature_copied_from_another_model_is_refused(signed, forest_artifact, trusted, tmp_path):
    forest = tmp_path / "forest" / "model.joblib"
    forest.parent.mkdir()
    shutil.copy(forest_artifact, forest)
    shutil.copy(manifest_path(forest_artifact), manifest_path(forest))
    shutil.copy(signature_path(signed), signature_path(forest))
    assert "does not match model.joblib.json" in _refused(forest, trusted, tmp_path)


def test_verify_artifact_checks_signature_then_digest(signed, trusted):
    manifest_bytes, data = manifest_path(signed).read_bytes(), signed.read_bytes()
    assert verify_artifact(signed, manifest_bytes, data, trusted).key_id == trusted[0].key_id
    with pytest.raises(ArtifactError, match="SHA-256 mismatch for model.joblib: the signed manifest says"):
        verify_artifact(signed, manifest_bytes, data + b"x", trusted)
    with pytest.raises(ArtifactError, match="does not match model.joblib.json"):
        verify_artifact(signed, manifest_bytes + b" ", data, trusted)


def test_reload_of_an_unsigned_version_is_409_and_the_signed_one_keeps_serving(keys, tmp_path, monkeypatch):
    import training

    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    root = tmp_path / "models"
    first = root / "iris" / "1" / "model.joblib"
    training.train(first, name="iris", version="1")
    sign_artifact(first, load_private_key(keys["private"]))
    client = create_app_for_test(
        {"MODEL_DIR": str(root), "ADMIN_TOKEN": TOKEN, "TRUSTED_KEYS": [str(keys["public"])]}
    ).test_client()
    training.train(root / "iris" / "2" / "model.joblib", name="iris", version="2")
    response = client.post("/admin/models/iris/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 409
    assert response.get_json()["message"] == (
        "model.joblib is not signed: TRUSTED_KEYS is set and model.joblib.sig is missing; "
        "sign it with 'iris-service sign model.joblib --key KEY'."
    )
    answer = client.post("/predict", json={"features": SETOSA}).get_json()
    assert (answer["prediction"], answer["version"]) == (0, "1")


# Settings.

def test_trusted_keys_from_the_environment_are_a_comma_separated_list(signed, keys, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("IRIS_SERVICE_TRUSTED_KEYS", f"{keys['other_public']}, {keys['public']}")
    sign_artifact(signed, load_private_key(keys["other_private"]))  # the first key of the two signs
    app = create_app_for_test({"MODEL_PATH": str(signed)})
    assert app.config["TRUSTED_KEYS"] == [str(keys["other_public"]), str(keys["public"])]
    assert app.test_client().post("/predict", json={"features": SETOSA}).get_json()["prediction"] == 0


def test_a_trusted_key_from_the_environment_is_a_file_name_never_json(signed, keys, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.chdir(tmp_path)
    shutil.copy(keys["public"], tmp_path / "1")  # a key file named like a JSON number
    monkeypatch.setenv("IRIS_SERVICE_TRUSTED_KEYS", "1")
    app = create_app_for_test({"MODEL_PATH": str(signed)})
    assert app.config["TRUSTED_KEYS"] == ["1"]
    assert app.test_client().post("/predict", json={"features": SETOSA}).status_code == 200


@pytest.mark.parametrize("value", [5, {"a": "b.pub"}, [1, 2]])
def test_trusted_keys_of_the_wrong_type_stop_create_app(value, iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    with pytest.raises(ConfigError, match="TRUSTED_KEYS must be a list of public key files"):
        create_app_for_test({"MODEL_PATH": str(iris_artifact), "TRUSTED_KEYS": value})


def _ed448_pub(path: Path) -> None:
    key = Ed448PrivateKey.generate().public_key()
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(None, "TRUSTED_KEYS: The public key file {path} does not exist.", id="missing"),
        pytest.param(lambda p, k: p.write_text("not a key\n"),
                     "TRUSTED_KEYS: {path} is not a PEM or OpenSSH public key.", id="garbage"),
        pytest.param(lambda p, k: shutil.copy(k["private"], p),
                     "TRUSTED_KEYS: {path} is a private key; trust its .pub file instead.", id="private-key"),
        pytest.param(lambda p, k: _ed448_pub(p),
                     "TRUSTED_KEYS: Public key {path} is not an Ed25519 key (Ed448PublicKey).", id="other-algorithm"),
    ],
)
def test_a_bad_key_file_stops_create_app(make, expected, signed, keys, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    bad = tmp_path / "bad.pub"
    if make is not None:
        make(bad, keys)
    with pytest.raises(ConfigError) as info:
        create_app_for_test({"MODEL_PATH": str(signed), "TRUSTED_KEYS": [str(keys["public"]), str(bad)]})
    assert str(info.value) == expected.format(path=bad)


def _pickle_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "iris_service" and "TRUSTED_KEYS" in r.getMessage()]


def test_production_warns_when_pickles_are_allowed_without_trusted_keys(iris_artifact, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    with caplog.at_level(logging.WARNING, logger="iris_service"):
        create_app({"ENV_NAME": "production", "MODEL_PATH": str(iris_artifact)})
    [record] = _pickle_warnings(caplog)
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "PICKLE_ALLOWED is on without TRUSTED_KEYS: whoever can write the model folder can run code here; "
        "set IRIS_SERVICE_TRUSTED_KEYS=/path/key.pub (iris-service keygen, iris-service sign) "
        "or IRIS_SERVICE_PICKLE_ALLOWED=false."
    )


def test_production_with_trusted_keys_does_not_warn(signed, keys, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    with caplog.at_level(logging.WARNING, logger="iris_service"):
        create_app({"ENV_NAME": "production", "MODEL_PATH": str(signed), "TRUSTED_KEYS": [str(keys["public"])]})
        create_app_for_test({"MODEL_PATH": str(signed)})  # nor does testing, signed or not
    assert _pickle_warnings(caplog) == []


# The command line.

def _invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _error_line(result) -> str:
    """A failed command's output: exactly one line, click's ``Error: ...``, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = result.output.splitlines()
    assert line.startswith("Error: ")
    return line


def test_keygen_writes_a_private_key_only_its_owner_reads_and_a_public_key(tmp_path):
    out = tmp_path / "ci" / "signing.key"
    result = _invoke("keygen", "--out", out)
    assert result.exit_code == 0, result.output
    kid = load_public_key(Path(f"{out}.pub")).key_id
    assert result.output == f"wrote {out} (private key: keep it secret) and {out}.pub (key id {kid[:16]})\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_private_key(out).public_key().public_bytes_raw() == \
        load_public_key(Path(f"{out}.pub")).public_key.public_bytes_raw()


def test_keygen_never_overwrites_a_key(tmp_path):
    out = tmp_path / "signing.key"
    assert _invoke("keygen", "--out", out).exit_code == 0
    before = out.read_bytes()
    assert _error_line(_invoke("keygen", "--out", out)) == \
        f"Error: {out} exists; not overwriting a key (remove it or choose another --out)."
    assert out.read_bytes() == before


def test_train_with_sign_key_writes_a_signed_artifact(keys, trusted, tmp_path):
    out = tmp_path / "models" / "model.joblib"
    result = _invoke("train", "--out", out, "--version", "1", "--sign-key", keys["private"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == \
        f"signed model.joblib with key {trusted[0].key_id[:16]}; wrote {signature_path(out)}"
    assert load_verified(out, trusted_keys=trusted).obj.predict([SETOSA]).tolist() == [0]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param("missing.key", "Error: The private key file {path} does not exist.", id="missing"),
        pytest.param("public", "Error: {path} is not a PEM (PKCS8) private key.", id="public-key"),
    ],
)
def test_train_with_a_bad_sign_key_fails_before_writing_anything(keys, tmp_path, key, expected):
    path = keys["public"] if key == "public" else tmp_path / key
    out = tmp_path / "models" / "model.joblib"
    line = _error_line(_invoke("train", "--out", out, "--sign-key", path))
    assert line == expected.format(path=path)
    assert not out.parent.exists()


def test_register_with_sign_key_writes_a_signed_artifact(keys, trusted, tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    notebook = tmp_path / "notebook.pkl"
    joblib.dump(LogisticRegression(max_iter=500).fit(iris.data, iris.target), notebook)
    root = tmp_path / "models"
    result = _invoke("register", notebook, "--name", "nb", "--version", "2", "--model-dir", root, "--trust",
                     "--sign-key", keys["private"])
    assert result.exit_code == 0, result.output
    target = root / "nb" / "2" / "model.pkl"
    assert result.output.splitlines()[-1] == \
        f"signed model.pkl with key {trusted[0].key_id[:16]}; wrote {signature_path(target)}"
    assert load_verified(target, trusted_keys=trusted).obj.predict([SETOSA]).tolist() == [0]


def test_export_onnx_with_sign_key_writes_a_signed_onnx_artifact(keys, trusted, tmp_path):
    root = tmp_path / "models"
    assert _invoke("train", "--model-dir", root, "--version", "3", "--sign-key", keys["private"]).exit_code == 0
    result = _invoke("export-onnx", "iris", "--model-dir", root, "--sign-key", keys["private"])
    assert result.exit_code == 0, result.output
    onnx = root / "iris" / "3" / "model.onnx"
    assert result.output.splitlines()[-1] == \
        f"signed model.onnx with key {trusted[0].key_id[:16]}; wrote {signature_path(onnx)}"
    model = from_artifact(load_verified(onnx, pickle_allowed=False, trusted_keys=trusted))
    assert model.predict(np.array([SETOSA])).classes.tolist() == [0]


def test_sign_signs_an_existing_artifact(artifact, keys, trusted, tmp_path):
    result = _invoke("sign", artifact, "--key", keys["private"])
    assert result.exit_code == 0, result.output
    assert result.output == f"signed model.joblib with key {trusted[0].key_id[:16]}; wrote {signature_path(artifact)}\n"
    assert load_verified(artifact, trusted_keys=trusted).obj.predict([SETOSA]).tolist() == [0]


def test_sign_refuses_an_artifact_that_fails_its_hash_check(artifact, keys, tmp_path):
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    line = _error_line(_invoke("sign", artifact, "--key", keys["private"]))
    assert line.startswith("Error: SHA-256 mismatch for model.joblib: the manifest says ")
    assert line.endswith(". Not signing it.")
    assert not signature_path(artifact).exists()


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param("gone.joblib", "Error: Model artifact gone.joblib does not exist", id="no-artifact"),
        pytest.param("bare.joblib", "Error: No manifest for bare.joblib: expected bare.joblib.json beside it.",
                     id="no-manifest"),
    ],
)
def test_sign_refuses_what_is_not_an_artifact(keys, tmp_path, target, expected):
    (tmp_path / "bare.joblib").write_bytes(b"not a model")
    line = _error_line(_invoke("sign", tmp_path / target, "--key", keys["private"]))
    assert line.startswith(expected)


# A real server.

@pytest.mark.server
def test_production_server_serves_a_model_signed_on_the_command_line(tmp_path):
    key = tmp_path / "keys" / "signing.key"
    model = tmp_path / "models" / "model.joblib"
    assert _invoke("keygen", "--out", key).exit_code == 0
    assert _invoke("train", "--out", model, "--version", "1", "--sign-key", key).exit_code == 0
    port = free_port()
    env = server_env(model, tmp_path, IRIS_SERVICE_TRUSTED_KEYS=f"{key}.pub")
    with run_server(serve_args(port), env, port, output=tmp_path / "server.log") as (base, _proc):
        response = requests.post(f"{base}/predict", json={"features": SETOSA}, timeout=10)
    assert response.status_code == 200
    assert response.json()["prediction"] == 0 and response.json()["version"] == "1"
    assert "PICKLE_ALLOWED is on without TRUSTED_KEYS" not in (tmp_path / "server.log").read_text()


@pytest.mark.server
def test_production_server_refuses_to_start_with_an_unsigned_model(iris_artifact, keys, tmp_path):
    env = {**os.environ, **server_env(iris_artifact, tmp_path, IRIS_SERVICE_TRUSTED_KEYS=str(keys["public"]))}
    result = subprocess.run(serve_args(free_port()), env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "serving on" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert line == (
        "Error: Refusing to start: model 'iris': model.joblib is not signed: TRUSTED_KEYS is set and "
        "model.joblib.sig is missing; sign it with 'iris-service sign model.joblib --key KEY'. "
        "(check IRIS_SERVICE_MODEL_PATH / MODELS / MODEL_DIR)."
    )
    assert result.stderr.splitlines()[-1] == line
