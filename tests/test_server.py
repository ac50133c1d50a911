"""The compatibility promise against real servers on free loopback ports."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import ROOT, free_port, run_server

CURL_BODY = '{"features": [5.1, 3.5, 1.4, 0.2]}'


def curl_predict(base: str) -> tuple[int, dict]:
    """The README's exact curl call (urllib when curl is not installed)."""
    if shutil.which("curl"):
        out = subprocess.run(
            ["curl", "-sS", "-w", "\n%{http_code}", "-X", "POST", f"{base}/predict",
             "-H", "Content-Type: application/json", "-d", CURL_BODY],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
        body, _, status = out.rpartition("\n")
        return int(status), json.loads(body)
    response = requests.post(f"{base}/predict", data=CURL_BODY, headers={"Content-Type": "application/json"},
                             timeout=30)
    return response.status_code, response.json()


def assert_promise(base: str) -> None:
    status, body = curl_predict(base)
    assert status == 200
    assert body["prediction"] == 0 and type(body["prediction"]) is int
    health = requests.get(f"{base}/health", timeout=10)
    assert health.status_code == 200
    assert health.headers["Content-Type"].startswith("application/json")
    assert health.json()["status"] == "API is running!"


@pytest.mark.server
def test_curl_promise_with_iris_service_serve(live_server):
    with live_server() as base:
        assert_promise(base)
        assert requests.get(f"{base}/nope", timeout=10).json()["code"] == 404


@pytest.mark.server
def test_waitress_serve_call_create_app(iris_artifact, tmp_path):
    port = free_port()
    waitress_serve = Path(sys.executable).with_name("waitress-serve")
    args = [str(waitress_serve), "--host", "127.0.0.1", "--port", str(port), "--call", "iris_service.cli.wsgi:create_app"]
    env = {"IRIS_SERVICE_ENV": "production", "IRIS_SERVICE_MODEL_PATH": str(iris_artifact),
           "IRIS_SERVICE_INSTANCE_PATH": str(tmp_path)}
    log = tmp_path / "server.log"
    with run_server(args, env, port, output=log) as (base, _):
        assert_promise(base)
        # The documented factory for waitress-serve is the app as servers run it: its request log reaches
        # stderr (written by a background thread, so wait for it; waitress-serve dies on SIGTERM).
        deadline = time.monotonic() + 10
        while '"path":"/predict"' not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    lines = log.read_text().splitlines()
    assert any('"path":"/predict"' in line and '"status":200' in line for line in lines), lines[-5:]


@pytest.mark.server
@pytest.mark.skipif(os.name == "nt", reason="gunicorn runs on POSIX hosts only")
def test_gunicorn_wsgi_app(iris_artifact, tmp_path):
    port = free_port()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    args = [str(gunicorn), "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi:app"]
    env = {"IRIS_SERVICE_ENV": "production", "IRIS_SERVICE_MODEL_PATH": str(iris_artifact),
           "IRIS_SERVICE_INSTANCE_PATH": str(tmp_path)}
    with run_server(args, env, port, cwd=ROOT) as (base, _):
        for _ in range(4):  # both workers answer the same
            assert_promise(base)
