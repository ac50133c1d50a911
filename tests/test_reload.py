"""Hot reload: verified swaps with zero failed requests, and every fault keeps the old model."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import KNOWN_ROWS, create_app_for_test, free_port, run_server, serve_args, server_env

from iris_service import training
from iris_service.artifacts import manifest_path

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROW = KNOWN_ROWS[1][0]


def _train(root: Path, version: str, kind: str = "logreg") -> Path:
    out = root / "iris" / version / "model.joblib"
    training.train(out, kind=kind, name="iris", version=version, n_estimators=10)
    return out


def _tamper(artifact: Path) -> None:
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    _train(root, "1")
    return root


@pytest.fixture
def app_config(model_dir):
    return {"MODEL_DIR": str(model_dir), "ADMIN_TOKEN": TOKEN}


def _version(client) -> str:
    response = client.post("/predict", json={"features": ROW})
    assert response.status_code == 200
    return response.get_json()["version"]


# The endpoint's guard.

def test_reload_is_404_when_no_token_is_configured(model_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    client = create_app_for_test({"MODEL_DIR": str(model_dir)}).test_client()
    response = client.post("/admin/models/iris/reload", headers=AUTH)
    assert response.status_code == 404
    assert response.get_json()["code"] == 404


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}])
def test_reload_with_a_wrong_token_is_401_with_challenge(client, headers):
    response = client.post("/admin/models/iris/reload", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="iris-service admin"'
    assert response.get_json() == {"code": 401, "status": "Unauthorized", "message": "Missing or wrong bearer token."}


def test_token_from_the_environment(model_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("IRIS_SERVICE_ADMIN_TOKEN", TOKEN)
    client = create_app_for_test({"MODEL_DIR": str(model_dir)}).test_client()
    assert client.post("/admin/models/iris/reload", headers=AUTH).status_code == 200


# Rolling out and back.

def test_reload_picks_up_the_newest_version(client, model_dir):
    assert _version(client) == "1"
    _train(model_dir, "2", kind="random_forest")
    assert _version(client) == "1"  # nothing changes until asked
    response = client.post("/admin/models/iris/reload", headers=AUTH)
    assert response.status_code == 200
    assert response.get_json() == {"name": "iris", "version": "2", "previous_version": "1"}
    assert _version(client) == "2"
    assert client.get("/models/iris").get_json()["training"]["model"] == "random_forest"


def test_roll_back_and_forward_with_version(client, model_dir):
    _train(model_dir, "2")
    assert client.post("/admin/models/iris/reload", headers=AUTH).get_json()["version"] == "2"
    back = client.post("/admin/models/iris/reload?version=1", headers=AUTH)
    assert back.get_json() == {"name": "iris", "version": "1", "previous_version": "2"}
    assert _version(client) == "1"
    assert client.post("/admin/models/iris/reload?version=2", headers=AUTH).get_json()["version"] == "2"
    assert _version(client) == "2"


def test_reload_of_an_unknown_version_is_404_and_keeps_serving(client):
    response = client.post("/admin/models/iris/reload?version=9", headers=AUTH)
    assert response.status_code == 404
    assert response.get_json()["message"] == "Model 'iris' has no version '9'; available: 1."
    assert _version(client) == "1"


def test_reload_of_an_unknown_model_is_404_naming_known(client):
    response = client.post("/admin/models/nope/reload", headers=AUTH)
    assert response.status_code == 404
    assert response.get_json()["errors"] == {"known_models": ["iris"]}


def test_reload_of_a_tampered_version_is_409_and_the_old_model_serves(client, model_dir):
    _tamper(_train(model_dir, "2"))
    response = client.post("/admin/models/iris/reload", headers=AUTH)
    assert response.status_code == 409
    assert response.get_json()["message"].startswith("SHA-256 mismatch for model.joblib: the manifest says ")
    assert _version(client) == "1"
    assert client.get("/health/ready").status_code == 200
    assert str(model_dir) not in response.get_data(as_text=True)


def test_artifact_deleted_while_serving_fails_reload_cleanly(client, model_dir):
    assert _version(client) == "1"
    (model_dir / "iris" / "1" / "model.joblib").unlink()
    response = client.post("/admin/models/iris/reload", headers=AUTH)
    assert response.status_code == 409
    assert response.get_json()["message"] == "No usable artifact with a manifest in version '1'."
    assert _version(client) == "1"
    assert client.get("/health/ready").status_code == 200


def test_manifest_deleted_while_serving_fails_reload_cleanly(client, model_dir):
    manifest_path(model_dir / "iris" / "1" / "model.joblib").unlink()
    assert client.post("/admin/models/iris/reload", headers=AUTH).status_code == 409
    assert _version(client) == "1"


def test_single_file_model_reloads_in_place(tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    path = tmp_path / "model.joblib"
    training.train(path, name="iris", version="1")
    client = create_app_for_test({"MODEL_PATH": str(path), "ADMIN_TOKEN": TOKEN}).test_client()
    training.train(path, name="iris", version="2")
    assert client.post("/admin/models/iris/reload", headers=AUTH).get_json()["version"] == "2"
    assert _version(client) == "2"
    wrong = client.post("/admin/models/iris/reload?version=1", headers=AUTH)
    assert wrong.status_code == 404
    assert wrong.get_json()["message"] == "Model 'iris' has no version '1'; its artifact is version '2'."
    assert _version(client) == "2"


# Readiness follows the models.

def test_ready_is_503_until_a_failed_model_is_fixed_by_reload(tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    root = tmp_path / "models"
    _tamper(_train(root, "1"))
    client = create_app_for_test({"MODEL_DIR": str(root), "ADMIN_TOKEN": TOKEN}).test_client()
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.get_json()["errors"]["models"]["iris"].startswith("SHA-256 mismatch for model.joblib")
    assert client.get("/health/live").status_code == 200
    assert client.post("/predict", json={"features": ROW}).status_code == 503
    _train(root, "2")
    assert client.post("/admin/models/iris/reload", headers=AUTH).get_json() == \
        {"name": "iris", "version": "2", "previous_version": None}
    assert client.get("/health/ready").get_json() == {"status": "ready", "models": {"iris": "2"}}


def test_production_refuses_to_start_with_a_bad_artifact(tmp_path):
    root = tmp_path / "models"
    _tamper(_train(root, "1"))
    env = {
        "IRIS_SERVICE_ENV": "production",
        "IRIS_SERVICE_MODEL_DIR": str(root),
        "IRIS_SERVICE_INSTANCE_PATH": str(tmp_path / "instance"),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "iris_service.cli", "serve", "--env", "production", "--host", "127.0.0.1",
         "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "Refusing to start: model 'iris': SHA-256 mismatch for model.joblib" in result.stderr
    assert "Traceback" not in result.stderr
    assert "serving on" not in result.stderr


# Under load, through a real waitress server.

THREADS = 8
REQUESTS_PER_THREAD = 150
LOAD_SECONDS = 10.0


def test_hot_reload_under_load_fails_no_request(tmp_path):
    root = tmp_path / "models"
    _train(root, "1")
    port = free_port()
    env = server_env(None, tmp_path, IRIS_SERVICE_MODEL_DIR=str(root), IRIS_SERVICE_ADMIN_TOKEN=TOKEN)
    args = serve_args(port, "--threads", "8")
    failures: list[str] = []
    answers: list[tuple[float, str]] = []  # (time the request was sent, version that answered)
    lock = threading.Lock()
    stop = threading.Event()
    deadline = time.monotonic() + LOAD_SECONDS

    def client_loop(base: str) -> None:
        with requests.Session() as session:
            for _ in range(REQUESTS_PER_THREAD):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                sent = time.monotonic()
                try:
                    response = session.post(f"{base}/predict", json={"instances": [r for r, _, _ in KNOWN_ROWS]},
                                            timeout=10)
                    body = response.json()
                    ok = response.status_code == 200 and [p["prediction"] for p in body["predictions"]] == [0, 1, 2]
                except (requests.RequestException, ValueError) as exc:
                    ok, body = False, repr(exc)
                with lock:
                    if ok:
                        answers.append((sent, body["version"]))
                    else:
                        failures.append(f"{getattr(response, 'status_code', '?')}: {body}")

    reloads: list[tuple[float, str]] = []  # (time the reload answered, version now serving)
    log = tmp_path / "server.log"
    with run_server(args, env, port, ready_path="/health/ready", output=log) as (base, _proc):
        workers = [threading.Thread(target=client_loop, args=(base,)) for _ in range(THREADS)]
        for worker in workers:
            worker.start()
        try:
            admin = requests.Session()

            def reload(query: str = "") -> requests.Response:
                return admin.post(f"{base}/admin/models/iris/reload{query}", headers=AUTH, timeout=30)

            for version, kind in (("2", "random_forest"), ("3", "logreg")):
                _train(root, version, kind=kind)
                response = reload()
                assert response.status_code == 200, response.text
                assert response.json()["version"] == version
                reloads.append((time.monotonic(), version))
            _tamper(_train(root, "4"))
            refused = reload()
            assert refused.status_code == 409
            assert refused.json()["message"].startswith("SHA-256 mismatch for model.joblib")
            rollback = reload("?version=2")
            assert rollback.json() == {"name": "iris", "version": "2", "previous_version": "3"}
            reloads.append((time.monotonic(), "2"))
            _train(root, "5")
            assert reload().json()["version"] == "5"
            reloads.append((time.monotonic(), "5"))
            after_last = time.monotonic()
            # Keep the load going a little on the final version (bounded by the deadline).
            while time.monotonic() < deadline and sum(1 for t, _ in answers if t > after_last) < 20:
                time.sleep(0.05)
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=30)
        final = requests.post(f"{base}/predict", json={"features": ROW}, timeout=10).json()

    assert not failures, failures[:5]
    assert answers, "no request completed"
    assert final["version"] == "5"
    # A request sent after a reload answered is served by that version or a later one, never an older one.
    for sent, version in answers:
        done = [i for i, (t, _) in enumerate(reloads) if t < sent]
        if done:
            assert version in [v for _, v in reloads[done[-1]:]], (sent, version, reloads)
    assert len({v for _, v in answers}) >= 2, "answers never switched version"
