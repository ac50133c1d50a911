"""Production serving: ``iris-service serve`` options, SIGTERM drains, gunicorn with its config.

Every server here is a real process on a free loopback port, stopped by its PID.
"""
from __future__ import annotations

import http.client
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from click.testing import CliRunner
from conftest import KNOWN_ROWS, ROOT, free_port, run_server, serve_args, server_env
from test_metrics import sample

from bench.servers import tree_pids
from iris_service.cli import main

POSIX_ONLY = pytest.mark.skipif(
    os.name == "nt", reason="SIGTERM and gunicorn are POSIX-only; on Windows waitress keeps its Ctrl+C behaviour"
)
#: A batch big enough that several of them keep one waitress thread busy for a while.
BIG_ROWS = [KNOWN_ROWS[i % 3][0] for i in range(10_000)]
BIG_BODY = orjson.dumps({"instances": BIG_ROWS})
LABELS = ["setosa", "versicolor", "virginica"]
#: Bytes a "slow" client holds back: its request stays in flight until it sends them.
HELD_BACK = 16


def log_records(path: Path) -> list[dict[str, Any]]:
    """The JSON request-log lines of a server's output file."""
    return [orjson.loads(line) for line in path.read_text(errors="replace").splitlines() if line.startswith('{"time"')]


def assert_big_answer(status: int, body: bytes) -> None:
    assert status == 200, body[:300]
    predictions = orjson.loads(body)["predictions"]
    assert len(predictions) == len(BIG_ROWS)
    assert [p["label"] for p in predictions[:3]] == LABELS


# --- options -------------------------------------------------------------------------------


def test_serve_help_lists_the_settings_people_tune() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--threads", "--env", "--connection-limit", "--channel-timeout",
                   "--url-prefix", "--trusted-proxy", "--trusted-proxy-headers", "--drain-timeout"):
        assert option in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trusted-proxy-headers", "x-forwarded-for"], "--trusted-proxy-headers needs --trusted-proxy"),
        (["--trusted-proxy", "10.0.0.1"], "--trusted-proxy needs --trusted-proxy-headers"),
        (["--trusted-proxy", "10.0.0.1", "--trusted-proxy-headers", "x-forwarded-nonsense"],
         "unknown trusted_proxy_headers value (x-forwarded-nonsense)"),
        (["--trusted-proxy", "10.0.0.1", "--trusted-proxy-headers", "forwarded x-forwarded-for"],
         "mutually exclusive"),
        (["--channel-timeout", "0"], "--channel-timeout"),
    ],
)
def test_bad_proxy_settings_are_usage_errors(args, message, iris_artifact, tmp_path, monkeypatch) -> None:
    for name, value in server_env(iris_artifact, tmp_path).items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["serve", "--port", "0", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_a_busy_port_is_a_clear_error(iris_artifact, tmp_path, monkeypatch) -> None:
    for name, value in server_env(iris_artifact, tmp_path).items():
        monkeypatch.setenv(name, value)
    with socket.socket() as taken:
        if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: else SO_REUSEADDR would share the port
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "--host", "127.0.0.1", "--port", str(port)])
    assert result.exit_code == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in result.output


@pytest.mark.server
def test_url_prefix_and_untrusted_forwarding_headers(iris_artifact, tmp_path) -> None:
    """Under --url-prefix /api the API answers at /api/...; X-Forwarded-For from anyone is ignored."""
    port, output = free_port(), tmp_path / "prefix.log"
    args = serve_args(port, "--url-prefix", "/api")
    with run_server(args, server_env(iris_artifact, tmp_path), port, ready_path="/api/health/live", output=output) as (base, _):
        response = requests.post(f"{base}/api/predict", json={"features": KNOWN_ROWS[0][0]}, timeout=30,
                                 headers={"X-Forwarded-For": "203.0.113.7", "X-Request-ID": "prefixed-1"})
        assert response.status_code == 200
        assert response.json()["label"] == "setosa"
        v2 = requests.post(f"{base}/api/v2/models/iris/infer", timeout=30, json={
            "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": KNOWN_ROWS[2][0]}]})
        assert v2.status_code == 200
        # The generated OpenAPI document knows where the API lives.
        assert requests.get(f"{base}/api/openapi.json", timeout=30).status_code == 200
    [record] = [r for r in log_records(output) if r["request_id"] == "prefixed-1"]
    assert record["path"] == "/predict" and record["status"] == 200
    assert record["remote_addr"] == "127.0.0.1"


@pytest.mark.server
def test_trusted_proxy_headers_set_the_logged_client_address(iris_artifact, tmp_path) -> None:
    port, output = free_port(), tmp_path / "proxy.log"
    args = serve_args(port, "--trusted-proxy", "127.0.0.1", "--trusted-proxy-headers", "x-forwarded-for x-forwarded-proto")
    with run_server(args, server_env(iris_artifact, tmp_path), port, output=output) as (base, _):
        response = requests.post(f"{base}/predict", json={"features": KNOWN_ROWS[1][0]}, timeout=30, headers={
            "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Request-ID": "proxied-1"})
        assert response.status_code == 200
        assert response.headers["X-Request-ID"] == "proxied-1"
    [record] = [r for r in log_records(output) if r["request_id"] == "proxied-1"]
    assert record["remote_addr"] == "203.0.113.7"
    assert record["model"] == "iris" and record["batch_size"] == 1


# --- SIGTERM -------------------------------------------------------------------------------


def accepted_connection(port: int) -> http.client.HTTPConnection:
    """A keep-alive connection the server has certainly accepted: it answered on it.

    A connect() that succeeded only means the kernel queued it; gunicorn's workers
    stop taking connections from that queue on SIGTERM.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/health/live")
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    return conn


class HeldRequest:
    """A POST whose last bytes are held back: in flight until ``finish`` sends them."""

    def __init__(self, port: int, body: bytes) -> None:
        self.body = body
        self.conn = accepted_connection(port)
        self.conn.putrequest("POST", "/predict")
        self.conn.putheader("Content-Type", "application/json")
        self.conn.putheader("Content-Length", str(len(body)))
        self.conn.endheaders()
        self.conn.send(body[:-HELD_BACK])

    def finish(self) -> tuple[int, bytes]:
        self.conn.send(self.body[-HELD_BACK:])
        response = self.conn.getresponse()
        try:
            return response.status, response.read()
        finally:
            self.conn.close()


def post_big(port: int, sent: threading.Event, results: list[tuple[int, bytes] | BaseException]) -> None:
    """One 10,000-row request on its own connection; the outcome goes into ``results``."""
    conn = None
    try:
        conn = accepted_connection(port)
        conn.request("POST", "/predict", BIG_BODY, {"Content-Type": "application/json"})
        sent.set()
        response = conn.getresponse()
        results.append((response.status, response.read()))
    except BaseException as exc:  # reported by the test, not lost in the thread
        sent.set()
        results.append(exc)
    finally:
        if conn is not None:
            conn.close()


def probe_until_refused(port: int, deadline: float) -> int:
    """Open new connections until one is refused; each accepted one must be answered.

    Returns how many were accepted and answered before the listener closed.
    """
    answered = 0
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.connect()
        except (ConnectionRefusedError, ConnectionResetError):
            # Refused, or reset: a connect that reached the backlog as the listener closed gets a RST.
            conn.close()
            return answered
        try:
            conn.request("POST", "/predict", orjson.dumps({"features": KNOWN_ROWS[0][0]}),
                         {"Content-Type": "application/json", "Connection": "close"})
            response = conn.getresponse()
            assert response.status == 200, "a connection accepted during shutdown was not answered"
            response.read()
            answered += 1
        finally:
            conn.close()
        time.sleep(0.05)
    raise AssertionError("new connections were still accepted 30 s after SIGTERM")


def wait_for_line(path: Path, text: str, deadline: float) -> None:
    """Wait (bounded) until the server's output file holds ``text``."""
    while text not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} not logged in time"
        time.sleep(0.05)


def drain_under_sigterm(proc, port: int, signalled: Callable[[], None], held: int = 2, streamed: int = 4) -> None:
    """SIGTERM in the middle of traffic: everything accepted is answered, then exit 0.

    ``held`` requests are in flight by construction: their bodies stay incomplete
    until ``signalled`` has seen the server start its shutdown. ``streamed``
    10,000-row requests are sent from threads and queue up on the server's workers.
    Afterwards nothing listens on the port any more.
    """
    held_requests = [HeldRequest(port, BIG_BODY) for _ in range(held)]
    results: list[tuple[int, bytes] | BaseException] = []
    events = [threading.Event() for _ in range(streamed)]
    threads = [threading.Thread(target=post_big, args=(port, event, results), daemon=True) for event in events]
    for thread in threads:
        thread.start()
    for event in events:
        assert event.wait(30), "a request could not be sent"
    proc.send_signal(signal.SIGTERM)

    signalled()
    for request in held_requests:
        assert_big_answer(*request.finish())
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a request in flight got no answer in 60 s"
    assert len(results) == streamed
    for result in results:
        assert not isinstance(result, BaseException), repr(result)
        assert_big_answer(*result)
    assert proc.wait(timeout=60) == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


@POSIX_ONLY
@pytest.mark.server
def test_sigterm_drains_waitress(iris_artifact, tmp_path) -> None:
    port, output = free_port(), tmp_path / "drain.log"
    with run_server(serve_args(port, "--server", "waitress", "--threads", "1"), server_env(iris_artifact, tmp_path), port,
                    output=output) as (_, proc):
        # The listener closes first: new connections are refused while the others finish.
        drain_under_sigterm(proc, port, lambda: probe_until_refused(port, time.monotonic() + 30))
    text = output.read_text(errors="replace")
    assert "draining requests in flight" in text and "drained; exiting" in text
    assert "Traceback" not in text
    # Every request that reached the app was logged with its answer.
    big = [r for r in log_records(output) if r["batch_size"] == len(BIG_ROWS)]
    assert [r["status"] for r in big] == [200] * 6


@POSIX_ONLY
@pytest.mark.server
def test_sigterm_closes_idle_keep_alive_connections_and_exits(iris_artifact, tmp_path) -> None:
    """A client holding an idle keep-alive connection does not keep the server alive."""
    port = free_port()
    with run_server(serve_args(port), server_env(iris_artifact, tmp_path), port,
                    output=tmp_path / "idle.log") as (base, proc):
        with requests.Session() as session:
            assert session.get(f"{base}/health/live", timeout=30).status_code == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{base}/health/live", timeout=5)


# --- gunicorn ------------------------------------------------------------------------------


@pytest.fixture
def gunicorn_server(iris_artifact: Path, tmp_path: Path) -> Iterator[tuple[str, int, Any, Path]]:
    """The real app (wsgi:app) under gunicorn.conf.py: 2 gthread workers, multiprocess metrics.

    4 threads each: a gthread worker gives a thread to a slow client (the held
    requests), so fewer threads than held requests per worker would stall the rest.
    """
    pytest.importorskip("gunicorn")
    multiproc_dir = tmp_path / "metrics"
    multiproc_dir.mkdir()
    (multiproc_dir / "counter_999999.db").write_bytes(b"stale")  # a previous run's file: wiped at start
    port = free_port()
    env = server_env(
        iris_artifact, tmp_path,
        GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="2", GUNICORN_THREADS="4",
        GUNICORN_GRACEFUL_TIMEOUT="30", PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir),
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    args = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--chdir", str(ROOT)]
    with run_server(args, env, port, output=tmp_path / "gunicorn.log") as (base, proc):
        yield base, port, proc, tmp_path / "gunicorn.log"


@POSIX_ONLY
@pytest.mark.server
def test_gunicorn_aggregates_metrics_and_drains_on_sigterm(gunicorn_server) -> None:
    base, port, proc, output = gunicorn_server
    classes = {"setosa": 0, "versicolor": 0, "virginica": 0}
    for i in range(12):
        row, _, label = KNOWN_ROWS[i % 3]
        # A new connection each time, so either worker may take it.
        response = requests.post(f"{base}/predict", json={"features": row}, timeout=30, headers={"Connection": "close"})
        assert response.status_code == 200 and response.json()["label"] == label
        classes[label] += 1
    labels = {"endpoint": "/predict", "method": "POST", "status": "200"}
    for _ in range(6):  # whichever worker answers the scrape, it reports both
        scrape = requests.get(f"{base}/metrics", timeout=30, headers={"Connection": "close"})
        assert scrape.status_code == 200
        text = scrape.text
        assert sample(text, "iris_http_requests_total", **labels) == 12
        for label, count in classes.items():
            assert sample(text, "iris_predictions_total", model="iris", version="1", **{"class": label}) == count
        # Loaded once, by the preloading master, and still counted after the start-up wipe.
        assert sample(text, "iris_model_loads_total", model="iris", kind="load", result="success") == 1
        assert sample(text, "iris_model_info", name="iris", version="1", sklearn_version=_sklearn_version()) == 1
    # gunicorn's gthread workers keep their listening socket until they exit, so a
    # connection arriving during the drain waits unanswered (Kubernetes stops sending
    # them first: see the preStop sleep); what is in flight is answered.
    drain_under_sigterm(proc, port, lambda: wait_for_line(output, "Handling signal: term", time.monotonic() + 30))
    text = output.read_text(errors="replace")
    assert "Traceback" not in text and "WORKER TIMEOUT" not in text


@POSIX_ONLY
@pytest.mark.server
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc to see which worker holds a socket")
def test_gunicorn_spreads_a_burst_of_keep_alive_clients_over_both_workers(gunicorn_server) -> None:
    """32 clients connecting at once end up on both workers, and stay there.

    With one shared listening socket the first worker to wake could accept the whole
    burst and keep every connection (keep-alive): one core idled while the other
    served 64 clients. gunicorn.conf.py's reuse_port gives each worker its own socket.
    """
    _base, port, proc, _output = gunicorn_server
    deadline = time.monotonic() + 30
    workers = tree_pids(proc.pid)[1:]  # the master's descendants: its workers
    while len(workers) < 2 or not all(socket_inodes(w) & tcp_inodes(port, LISTEN) for w in workers):
        assert time.monotonic() < deadline, "gunicorn's two workers never listened"
        time.sleep(0.1)
        workers = tree_pids(proc.pid)[1:]
    clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(32)]
    try:
        for client in clients:
            client.connect()
        for client in clients:
            client.request("GET", "/health/live")
        for client in clients:
            response = client.getresponse()
            assert response.status == 200 and not response.will_close
            response.read()
        held = [len(socket_inodes(w) & tcp_inodes(port, ESTABLISHED)) for w in workers]
    finally:
        for client in clients:
            client.close()
    # Hashed over client ports, a 32-connection split this uneven has odds of 1 in 400,000.
    assert sum(held) == 32 and min(held) >= 4, held


#: Socket states as /proc/net/tcp writes them.
ESTABLISHED, LISTEN = "01", "0A"


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process ``pid`` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def tcp_inodes(port: int, state: str) -> set[str]:
    """Inodes of the IPv4 TCP sockets whose local port is ``port``, in ``state``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
            inodes.add(fields[9])
    return inodes


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__
