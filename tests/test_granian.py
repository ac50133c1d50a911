"""``iris-service serve --server granian``: settings it picks or refuses, workers, metrics, our WSGI layers.

The behaviour every server shares is in ``tests/test_server_matrix.py``; this
file holds what is granian's own. Servers are real processes on free loopback
ports, stopped by their PID; a worker is killed only by a PID read from the
server's own log and found among that server's children.
"""
from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from conftest import KNOWN_ROWS, free_port, run_server, serve_args, server_env
from test_metrics import sample
from test_server import assert_promise

from bench.servers import tree_pids
from iris_service.cli import main
from iris_service.servers import granian_server, wsgi_layers

ROW = KNOWN_ROWS[0][0]
POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="reads worker PIDs and kills one: POSIX")


def invoke(args: list[str], artifact: Path, folder: Path, monkeypatch: pytest.MonkeyPatch, **env: str):
    for name, value in server_env(artifact, folder, **env).items():
        monkeypatch.setenv(name, value)
    return CliRunner().invoke(main, ["serve", "--port", "0", *args])


# --- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_batching_with_one_thread_is_refused_saying_what_to_set(mode, iris_artifact, tmp_path, monkeypatch) -> None:
    result = invoke(["--threads", "1"], iris_artifact, tmp_path, monkeypatch, IRIS_SERVICE_BATCHING=mode)
    assert result.exit_code == 2, result.output
    assert (f"BATCHING={mode} gathers requests in flight in one process, and --threads 1 lets one in at a time: "
            "set --threads 4 (or more) or IRIS_SERVICE_BATCHING=off") in " ".join(result.output.split())


@pytest.mark.parametrize(("mode", "server", "threads"), [("off", "granian", 2), ("on", "granian", 4),
                                                         ("auto", "granian", 4), ("on", "waitress", 8)])
def test_threads_default_to_the_measured_setting_for_batching(mode, server, threads) -> None:
    from iris_service.cli.serve_granian import pick_threads

    assert pick_threads(None, mode, server) == threads
    assert pick_threads(3, mode, server) == 3


@pytest.mark.parametrize(("args", "message"), [
    (["--server", "waitress", "--workers", "2"], "waitress runs one process: use --server granian --workers N"),
    (["--server", "granian", "--grpc-port", "0"], "--grpc-port serves beside waitress"),
    (["--threads", "8", "--connection-limit", "4"], "--connection-limit 4 is below --threads 8"),
])
def test_settings_a_server_cannot_honour_are_usage_errors(args, message, iris_artifact, tmp_path, monkeypatch) -> None:
    result = invoke(args, iris_artifact, tmp_path, monkeypatch)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_several_workers_on_windows_are_refused_in_one_line(monkeypatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(ValueError, match="granian runs one worker on Windows"):
        granian_server.GranianSettings(workers=2).check()
    granian_server.GranianSettings(workers=1).check()


def test_a_missing_granian_is_one_line_saying_what_to_install(iris_artifact, tmp_path) -> None:
    code = ("import sys; sys.modules['granian'] = None\n"
            "from iris_service.cli import main\n"
            "main(['serve', '--port', '0'])\n")
    env = {**os.environ, **server_env(iris_artifact, tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: --server granian needs granian: pip install 'granian>=2.5,<3' (or serve with --server waitress)")


def test_a_busy_port_is_a_clear_error_under_granian(iris_artifact, tmp_path, monkeypatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for name, value in server_env(iris_artifact, tmp_path).items():
            monkeypatch.setenv(name, value)
        result = CliRunner().invoke(main, ["serve", "--server", "granian", "--host", "127.0.0.1", "--port", str(port)])
    assert result.exit_code == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in result.output


# --- the default server ------------------------------------------------------------------------------


@pytest.mark.server
def test_serve_without_a_server_flag_is_granian_and_keeps_the_promise(iris_artifact, tmp_path) -> None:
    port, output = free_port(), tmp_path / "default.log"
    with run_server(serve_args(port), server_env(iris_artifact, tmp_path), port, output=output) as (base, _):
        assert_promise(base)
        assert requests.get(f"{base}/health/live", timeout=10).headers["Server"] == "granian"
    assert "(granian, 1 worker(s) x 2 thread(s))" in output.read_text(errors="replace")


@pytest.mark.server
def test_fewer_clients_holding_back_their_body_than_threads_leave_others_served(iris_artifact, tmp_path) -> None:
    """granian gives a client that holds back its body a thread (granian #728); the others still serve."""
    port = free_port()
    with run_server(serve_args(port, "--threads", "4"), server_env(iris_artifact, tmp_path), port,
                    output=tmp_path / "held.log") as (base, _):
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        try:
            for sock in held:
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100\r\n\r\n{")
            for _ in range(3):
                response = requests.post(f"{base}/predict", json={"features": ROW}, timeout=30)
                assert response.status_code == 200 and response.json()["prediction"] == 0
        finally:
            for sock in held:
                sock.close()


# --- several workers ----------------------------------------------------------------------------------


def worker_pids(output: Path, server_pid: int) -> list[int]:
    """The live workers granian logged spawning, each confirmed as a child of ``server_pid``."""
    logged = [int(pid) for pid in re.findall(r"Spawning worker-\d+ with PID: (\d+)", output.read_text(errors="replace"))]
    children = set(tree_pids(server_pid)[1:])
    return [pid for pid in logged if pid in children]


def files_of(folder: Path, pid: int) -> set[str]:
    return {path.name for path in folder.glob(f"*_{pid}.db")}


@POSIX_ONLY
@pytest.mark.server
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers in Linux's /proc")
def test_two_workers_sum_in_every_scrape_and_a_dead_workers_gauges_go(iris_artifact, tmp_path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "gauge_livesum_999999.db").write_bytes(b"stale")  # a previous run's file: emptied at start
    port, output = free_port(), tmp_path / "workers.log"
    env = server_env(iris_artifact, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    with run_server(serve_args(port, "--workers", "2"), env, port, output=output) as (base, proc):
        workers = worker_pids(output, proc.pid)
        assert len(workers) == 2, output.read_text(errors="replace")[-2000:]
        sent = 0
        # New connections until each worker has answered (its counter file exists), at most 400.
        while not all(f"counter_{pid}.db" in files_of(metrics_dir, pid) for pid in workers):
            assert sent < 400, "one worker never answered"
            response = requests.post(f"{base}/predict", json={"features": ROW}, timeout=30,
                                     headers={"Connection": "close"})
            assert response.status_code == 200
            sent += 1
        assert not (metrics_dir / "gauge_livesum_999999.db").exists()
        labels = {"endpoint": "/predict", "method": "POST", "status": "200"}
        for _ in range(6):  # whichever worker answers the scrape, it reports both
            text = requests.get(f"{base}/metrics", timeout=30, headers={"Connection": "close"}).text
            assert sample(text, "iris_http_requests_total", **labels) == sent
            assert sample(text, "iris_predictions_total", model="iris", version="1", **{"class": "setosa"}) == sent
            # Loaded once, by the main process, before the workers were forked.
            assert sample(text, "iris_model_loads_total", model="iris", kind="load", result="success") == 1
        victim = workers[0]
        assert any(name.startswith("gauge_livesum_") for name in files_of(metrics_dir, victim))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(replacements := [p for p in worker_pids(output, proc.pid) if p not in workers]) < 1:
            assert time.monotonic() < deadline, "granian did not respawn the killed worker"
            time.sleep(0.2)
        text = ""
        while time.monotonic() < deadline:
            response = requests.get(f"{base}/metrics", timeout=30, headers={"Connection": "close"})
            if response.status_code == 200:
                text = response.text
                break
            time.sleep(0.2)
        # The dead worker's in-flight gauge is gone; its counts stay in the sum.
        assert not any(name.startswith("gauge_live") for name in files_of(metrics_dir, victim))
        assert sample(text, "iris_http_requests_total", **labels) == sent
        assert sample(text, "iris_http_requests_in_flight") == 0
        assert replacements[0] != victim
    assert proc.returncode == 0


# --- our WSGI layers -------------------------------------------------------------------------------


def call(app, path: str = "/x", **environ: object) -> tuple[str, dict]:
    seen: dict = {}

    def inner(env, start_response):
        seen.update(env)
        start_response("200 OK", [])
        return [b""]

    statuses: list[str] = []
    base = {"PATH_INFO": path, "SCRIPT_NAME": "", "REMOTE_ADDR": "10.0.0.1", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""), **environ}
    b"".join(app(inner)(base, lambda status, headers: statuses.append(status)))
    return statuses[0], seen


def test_the_prefix_mount_serves_under_the_prefix_only() -> None:
    status, seen = call(lambda inner: wsgi_layers.PrefixMount(inner, "/api/"), "/api/predict")
    assert status == "200 OK" and seen["PATH_INFO"] == "/predict" and seen["SCRIPT_NAME"] == "/api"
    assert call(lambda inner: wsgi_layers.PrefixMount(inner, "/api"), "/apipredict")[0] == "404 Not Found"
    assert call(lambda inner: wsgi_layers.PrefixMount(inner, "/api"), "/predict")[0] == "404 Not Found"


def test_forwarding_headers_are_believed_from_the_trusted_proxy_only() -> None:
    def layer(inner):
        return wsgi_layers.TrustedProxy(inner, "10.0.0.1", {"x-forwarded-for", "x-forwarded-proto"})

    _, seen = call(layer, HTTP_X_FORWARDED_FOR="1.1.1.1, 2.2.2.2", HTTP_X_FORWARDED_PROTO="https")
    assert seen["REMOTE_ADDR"] == "2.2.2.2" and seen["wsgi.url_scheme"] == "https"
    _, seen = call(layer, REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR="1.1.1.1")
    assert seen["REMOTE_ADDR"] == "10.9.9.9"
    _, seen = call(lambda inner: wsgi_layers.TrustedProxy(inner, "*", {"forwarded"}),
                   HTTP_FORWARDED='for=1.1.1.1, for="[2001:db8::1]:443";proto=https')
    assert seen["REMOTE_ADDR"] == "2001:db8::1" and seen["wsgi.url_scheme"] == "https"


def test_a_chunked_body_becomes_a_declared_one_read_no_further_than_the_limit() -> None:
    body = io.BytesIO(b"x" * 5000)
    _, seen = call(lambda inner: wsgi_layers.ChunkedBodyLimit(inner, 1000), HTTP_TRANSFER_ENCODING="chunked",
                   **{"wsgi.input": body, "wsgi.input_terminated": True})
    assert seen["CONTENT_LENGTH"] == "1001" and seen["wsgi.input"].read() == b""
    assert body.tell() == 1001  # the rest of the body was never read
    _, seen = call(lambda inner: wsgi_layers.ChunkedBodyLimit(inner, 1000), HTTP_TRANSFER_ENCODING="chunked",
                   **{"wsgi.input": io.BytesIO(b"y" * 10)})
    assert seen["CONTENT_LENGTH"] == "10" and seen["wsgi.input"].read() == b"y" * 10


def test_several_workers_without_a_metrics_folder_get_a_private_one_removed_at_exit(tmp_path) -> None:
    """``--workers 2`` with no PROMETHEUS_MULTIPROC_DIR: serve makes one, so a scrape still sums both."""
    code = ("import os\n"
            "from iris_service.cli.serve_granian import prepare_metrics_dir\n"
            "path = prepare_metrics_dir(2)\n"
            "assert os.environ['PROMETHEUS_MULTIPROC_DIR'] == path and os.path.isdir(path)\n"
            "print(path)\n")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.name.startswith("iris-metrics-") and not path.exists()


@POSIX_ONLY
@pytest.mark.server
def test_two_workers_with_no_metrics_folder_still_sum_in_every_scrape(iris_artifact, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    port, output = free_port(), tmp_path / "private.log"
    with run_server(serve_args(port, "--workers", "2"), server_env(iris_artifact, tmp_path), port,
                    output=output) as (base, _proc):
        for _ in range(30):  # new connections: both workers take some
            response = requests.post(f"{base}/predict", json={"features": ROW}, timeout=30,
                                     headers={"Connection": "close"})
            assert response.status_code == 200
        labels = {"endpoint": "/predict", "method": "POST", "status": "200"}
        for _ in range(6):
            text = requests.get(f"{base}/metrics", timeout=30, headers={"Connection": "close"}).text
            assert sample(text, "iris_http_requests_total", **labels) == 30
    assert "is not set" not in output.read_text(errors="replace")
