"""Payload logs in real servers: queued records survive SIGTERM, gRPC calls are logged, workers share a file.

``iris-service serve`` runs granian (several worker processes, each with its own writer)
unless ``--server waitress`` is given; both are tested.
"""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import orjson
import pytest
import requests
from conftest import KNOWN_ROWS, ROOT, free_port, run_server, serve_args, server_env
from payload_receiver import receiver

pytestmark = pytest.mark.server

ROWS = [row for row, _, _ in KNOWN_ROWS]


def records_in(*paths: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for path in paths if path.exists() for line in path.read_bytes().splitlines()]


def send(base: str, count: int, prefix: str) -> None:
    with requests.Session() as session:
        for i in range(count):
            response = session.post(f"{base}/predict", json={"features": ROWS[i % 3]},
                                    headers={"X-Request-ID": f"{prefix}-{i}"}, timeout=30)
            assert response.status_code == 200


@pytest.mark.parametrize("server", ["granian", "waitress"])
def test_sigterm_delivers_the_records_still_queued_for_a_slow_receiver(iris_artifact, tmp_path, server) -> None:
    port = free_port()
    with receiver(delay=0.01) as (url, received):
        env = server_env(iris_artifact, tmp_path, IRIS_SERVICE_PAYLOAD_LOG=url)
        with run_server(serve_args(port, "--server", server), env, port, output=tmp_path / "server.log") as (
                base, proc):
            send(base, 60, "term")
            # The receiver takes 10 ms an event: most of the 120 are still queued now (and take
            # about a second of the exit's 5 s to deliver).
            assert len(received.events) < 120
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        events = list(received.events)
    ids = [(h["ce-id"], h["ce-type"].rpartition(".")[2]) for h, _ in events]
    # Each worker process has its own writer, so requests interleave; each request's event precedes its response's.
    assert sorted(ids) == sorted((f"term-{i}", kind) for i in range(60) for kind in ("request", "response"))
    assert all(ids.index((f"term-{i}", "request")) < ids.index((f"term-{i}", "response")) for i in range(60))
    assert "Traceback" not in (tmp_path / "server.log").read_text(errors="replace")


@pytest.mark.parametrize("server", ["granian", "waitress"])
def test_sigterm_writes_every_answered_request_to_the_file(iris_artifact, tmp_path, server) -> None:
    port, out = free_port(), tmp_path / "payloads.jsonl"
    env = server_env(iris_artifact, tmp_path, IRIS_SERVICE_PAYLOAD_LOG=str(out))
    with run_server(serve_args(port, "--server", server), env, port, output=tmp_path / "server.log") as (base, proc):
        send(base, 300, "file")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    by_id = {r["request_id"]: r for r in records_in(out)}
    assert len(records_in(out)) == 300 and set(by_id) == {f"file-{i}" for i in range(300)}
    assert all(by_id[f"file-{i}"]["inputs"] == [ROWS[i % 3]] for i in range(300))


def test_grpc_calls_are_logged_beside_rest_under_their_request_id(iris_artifact, tmp_path) -> None:
    import numpy as np
    import tritonclient.grpc as triton

    http_port, grpc_port, out = free_port(), free_port(), tmp_path / "payloads.jsonl"
    env = server_env(iris_artifact, tmp_path, IRIS_SERVICE_PAYLOAD_LOG=str(out))
    args = serve_args(http_port, "--grpc-port", str(grpc_port))
    with run_server(args, env, http_port, output=tmp_path / "server.log") as (base, proc):
        with triton.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
            tensor = triton.InferInput("input-0", [3, 4], "FP64")
            tensor.set_data_from_numpy(np.array(ROWS))
            answer = client.infer("iris", [tensor], outputs=[triton.InferRequestedOutput("predict")],
                                  headers={"x-request-id": "grpc-pl-1"})
            assert answer.as_numpy("predict").tolist() == [0, 1, 2]
        send(base, 1, "rest")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    by_id = {r["request_id"]: r for r in records_in(out)}
    assert set(by_id) == {"grpc-pl-1", "rest-0"}
    assert by_id["grpc-pl-1"]["inputs"] == ROWS
    assert by_id["grpc-pl-1"]["outputs"]["predictions"] == ["setosa", "versicolor", "virginica"]
    assert by_id["rest-0"]["inputs"] == [ROWS[0]]


@pytest.mark.skipif(sys.platform == "win32", reason="gunicorn runs on POSIX hosts only")
def test_gunicorn_workers_share_one_rotated_file_without_losing_or_mixing_lines(iris_artifact, tmp_path) -> None:
    port, out = free_port(), tmp_path / "payloads.jsonl"
    env = {
        **server_env(iris_artifact, tmp_path, IRIS_SERVICE_PAYLOAD_LOG=str(out),
                     IRIS_SERVICE_PAYLOAD_LOG_MAX_BYTES="4096", IRIS_SERVICE_PAYLOAD_LOG_BACKUPS="100"),
        "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "4",
    }
    args = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    pids = set()
    with run_server(args, env, port, cwd=ROOT, output=tmp_path / "gunicorn.log") as (base, proc):
        for i in range(200):  # a new connection each: the kernel spreads them over both workers
            response = requests.post(f"{base}/predict", json={"features": ROWS[i % 3]},
                                     headers={"X-Request-ID": f"g-{i}", "Connection": "close"}, timeout=30)
            assert response.status_code == 200
        pids = {line.split("pid: ")[1].strip() for line in (tmp_path / "gunicorn.log").read_text().splitlines()
                if "Booting worker with pid" in line}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert len(pids) == 2
    files = [out, *sorted(tmp_path.glob("payloads.jsonl.[0-9]*"))]
    assert len(files) > 5
    for path in files:
        assert path.stat().st_size <= 4096
    # Every line whole (parsed), every request once.
    assert sorted(str(r["request_id"]) for r in records_in(*files)) == sorted(f"g-{i}" for i in range(200))


@pytest.mark.skipif(sys.platform != "linux", reason="gunicorn workers sharing a gRPC port: Linux")
def test_grpc_in_gunicorn_workers_shares_the_rest_apps_payload_log(iris_artifact, tmp_path) -> None:
    """Each worker's gRPC server records into the app's log (one counter in /metrics, one exit flush)."""
    import numpy as np
    import tritonclient.grpc as triton

    port, grpc_port, out = free_port(), free_port(), tmp_path / "payloads.jsonl"
    env = {
        **server_env(iris_artifact, tmp_path, IRIS_SERVICE_PAYLOAD_LOG=str(out), IRIS_SERVICE_GRPC_PORT=str(grpc_port)),
        "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "2",
    }
    args = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    with run_server(args, env, port, cwd=ROOT, output=tmp_path / "gunicorn.log") as (base, proc):
        with triton.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
            for i in range(4):
                tensor = triton.InferInput("input-0", [1, 4], "FP64")
                tensor.set_data_from_numpy(np.array([ROWS[i % 3]]))
                client.infer("iris", [tensor], headers={"x-request-id": f"gw-{i}"})
        send(base, 2, "rest")
        assert "iris_payload_log_dropped" in requests.get(f"{base}/metrics", timeout=10).text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert sorted(str(r["request_id"]) for r in records_in(out)) == ["gw-0", "gw-1", "gw-2", "gw-3", "rest-0", "rest-1"]
    assert "Traceback" not in (tmp_path / "gunicorn.log").read_text(errors="replace")
