"""One matrix for every server we document: waitress, granian (``iris-service serve``) and gunicorn (Linux).

Each server runs once per module as a real process on a free loopback port
(stopped by its PID) with a 1 MB ``MAX_CONTENT_LENGTH`` and a 4 s request
timeout; the SIGTERM, url prefix and proxy rows start servers of their own.
Every socket has a timeout and every loop a bound.

granian fails one promise the others keep, so it has no row here: a client that
sends its headers and then holds back its *body* holds one of granian's
blocking threads until it disconnects (granian issue #728, "wontfix"). See
``tests/test_granian.py`` and ``iris-service serve --help``.
"""
from __future__ import annotations

import gzip
import http.client
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import requests
from conftest import KNOWN_ROWS, ROOT, free_port, run_server, serve_args, server_env
from test_serve import drain_under_sigterm, log_records, wait_for_line
from test_slow_clients import Tricklers, answer, predict, wait_trickling

from bench.servers import tree_pids

SERVERS = ["waitress", "granian", pytest.param("gunicorn", marks=pytest.mark.skipif(
    os.name == "nt", reason="gunicorn runs on POSIX only"))]
LIMIT = 1_000_000
REQUEST_TIMEOUT = 4
#: The peak resident memory any process of a server may reach while it sends
#: 10,000-row answers (about 1.5 MB each): generous, for any OS and Python.
RSS_BOUND_MIB = 400
#: How much that peak may still grow over four such answers once one was sent.
RSS_GROWTH_MIB = 64
ROW, _, SETOSA = KNOWN_ROWS[0]


def server_command(name: str, port: int, *extra: str) -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment of server ``name`` on ``port``."""
    if name == "gunicorn":
        pytest.importorskip("gunicorn")
        env = {"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "4",
               "GUNICORN_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
               "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
        return [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--chdir", str(ROOT)], env
    return serve_args(port, "--server", name, "--request-timeout", str(REQUEST_TIMEOUT), *extra), {}


class Running:
    """A started server: its base URL, port, process and output file."""

    def __init__(self, name: str, base: str, port: int, proc: Any, output: Path) -> None:
        self.name, self.base, self.port, self.proc, self.output = name, base, port, proc, output


def start(name: str, artifact: Path, folder: Path, *extra: str, ready: str = "/health/live",
          **env: str) -> Any:
    port = free_port()
    args, server_extra = server_command(name, port, *extra)
    output = folder / f"{name}-{port}.log"
    full_env = server_env(artifact, folder, IRIS_SERVICE_MAX_CONTENT_LENGTH=str(LIMIT), **server_extra, **env)
    return port, output, run_server(args, full_env, port, ready_path=ready, output=output)


@pytest.fixture(scope="module", params=SERVERS)
def running(request, iris_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """Each documented server, once for the module."""
    port, output, context = start(request.param, iris_artifact, tmp_path_factory.mktemp(request.param))
    with context as (base, proc):
        yield Running(request.param, base, port, proc, output)
    assert "Traceback" not in output.read_text(errors="replace")


def raw_exchange(port: int, head: bytes, pieces: list[bytes], timeout: float = 20.0) -> bytes:
    """Send ``head`` then ``pieces`` (stopping when the server answers), and read the answer until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        for piece in pieces:
            try:
                sock.sendall(piece)
            except OSError:  # the server answered and closed: the rest is not wanted
                break
        sock.shutdown(socket.SHUT_WR) if not pieces else None
        chunks = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and (chunk := sock.recv(65536)):
                chunks.append(chunk)
                if _complete(b"".join(chunks)):
                    break
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks)


def _complete(raw: bytes) -> bool:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return len(body) >= int(value)
    return False


def post_head(path: str = "/predict", **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(body: bytes, size: int = 8192) -> list[bytes]:
    """``body`` as HTTP/1.1 chunks, then the last chunk."""
    out = [f"{len(body[i:i + size]):x}\r\n".encode() + body[i:i + size] + b"\r\n" for i in range(0, len(body), size)]
    return [*out, b"0\r\n\r\n"]


def assert_too_large(raw: bytes) -> None:
    status, headers, body = answer(raw)
    assert status == 413, raw[:300]
    assert headers["content-type"] == "application/json"
    assert body["message"] == f"The request body is larger than the limit of {LIMIT} bytes."


# --- bodies ------------------------------------------------------------------------------------


@pytest.mark.server
def test_a_declared_oversized_body_is_refused_before_it_is_sent(running: Running) -> None:
    """Content-Length over the limit and no body sent: the app's 413 comes back anyway."""
    head = post_head(Content_Length=str(50 * LIMIT))
    with socket.create_connection(("127.0.0.1", running.port), timeout=20) as sock:
        sock.sendall(head)
        raw = b""
        while not _complete(raw) and (chunk := sock.recv(65536)):
            raw += chunk
    assert_too_large(raw)


@pytest.mark.server
def test_a_chunked_body_over_the_limit_is_refused_before_its_end(running: Running) -> None:
    """Chunks past 1 MB, the last chunk never sent: a 413 arrives while the body is unfinished."""
    body = b"[" + b"0," * LIMIT  # 2 MB of chunks, no final chunk
    raw = raw_exchange(running.port, post_head(Transfer_Encoding="chunked"), chunked(body)[:-1])
    assert_too_large(raw)


@pytest.mark.server
def test_a_chunked_body_is_read_whole(running: Running) -> None:
    rows = [row for row, _, _ in KNOWN_ROWS] * 400
    body = orjson.dumps({"instances": rows})
    status, _, payload = answer(raw_exchange(running.port, post_head(Transfer_Encoding="chunked",
                                                                     Connection="close"), chunked(body, 1000)))
    assert status == 200
    assert [p["prediction"] for p in payload["predictions"]] == [0, 1, 2] * 400


@pytest.mark.server
def test_a_gzip_body_is_decompressed(running: Running) -> None:
    body = gzip.compress(orjson.dumps({"features": KNOWN_ROWS[2][0]}))
    response = requests.post(f"{running.base}/predict", data=body, timeout=30,
                             headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status_code == 200 and response.json()["label"] == "virginica"


# --- answers and connections ---------------------------------------------------------------------


def big_batch(rows: int = 10_000) -> bytes:
    rng = np.random.default_rng(11)
    low, high = np.array([4.3, 2.0, 1.0, 0.1]), np.array([7.9, 4.4, 6.9, 2.5])
    return orjson.dumps({"instances": np.round(rng.uniform(low, high, size=(rows, 4)), 1).tolist()})


def peak_rss_mib(pid: int) -> float:
    """The largest VmHWM (peak resident set) among ``pid`` and its descendants, in MiB."""
    peaks = []
    for each in tree_pids(pid):
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


@pytest.mark.server
def test_answers_of_a_mebibyte_and_more_arrive_byte_for_byte_with_bounded_memory(running: Running, client) -> None:
    body = big_batch()
    expected = client.post("/predict", data=body, content_type="application/json").data
    assert len(expected) > 1024 * 1024
    measure = Path("/proc/self/status").exists()
    with requests.Session() as session:
        def fetch() -> bytes:
            # identity: requests asks for gzip by default, and the compressed answer is small.
            answer = session.post(f"{running.base}/predict", data=body, timeout=60, headers={
                "Content-Type": "application/json", "Accept-Encoding": "identity"})
            assert answer.status_code == 200
            assert answer.headers["Content-Length"] == str(len(expected))
            return answer.content

        assert fetch() == expected
        before = peak_rss_mib(running.proc.pid) if measure else 0.0
        for _ in range(4):  # on one keep-alive connection: each answer ends where it should
            assert fetch() == expected
        after = peak_rss_mib(running.proc.pid) if measure else 0.0
    if measure:
        assert after < RSS_BOUND_MIB, f"{running.name} peaked at {after:.0f} MiB"
        assert after - before < RSS_GROWTH_MIB, f"{running.name} grew {after - before:.0f} MiB over 4 answers"


@pytest.mark.server
def test_keep_alive_serves_several_requests_on_one_connection(running: Running) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
    try:
        conn.connect()
        sock = conn.sock
        for row, cls, _ in KNOWN_ROWS:
            conn.request("POST", "/predict", orjson.dumps({"features": row}), {"Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200 and not response.will_close
            assert orjson.loads(response.read())["prediction"] == cls
            assert conn.sock is sock  # the same connection, not a reconnect
    finally:
        conn.close()


@pytest.mark.server
def test_the_request_id_comes_back_and_is_logged(running: Running) -> None:
    rid = f"matrix-{running.name}-1"
    response = requests.post(f"{running.base}/predict", json={"features": ROW}, timeout=30,
                             headers={"X-Request-ID": rid})
    assert response.status_code == 200 and response.headers["X-Request-ID"] == rid
    deadline = time.monotonic() + 10
    while not [r for r in log_records(running.output) if r["request_id"] == rid]:
        assert time.monotonic() < deadline, "the request was not logged"
        time.sleep(0.1)


@pytest.mark.server
def test_clients_trickling_their_headers_do_not_block_others(running: Running) -> None:
    """16 connections sending a header byte every half second: predictions are answered meanwhile,
    and the trickling connections are closed soon after the request timeout."""
    with Tricklers(running.port, 16) as tricklers:
        wait_trickling(tricklers, 2)
        for _ in range(4):
            predict(running.base)
        assert tricklers.closed == {}
        tricklers.wait_closed(REQUEST_TIMEOUT + 10)
        assert tricklers.open_ones() == []
        for seconds, _data in tricklers.closed.values():
            assert seconds < REQUEST_TIMEOUT + 6
    predict(running.base)


@pytest.mark.server
@pytest.mark.parametrize("name", ["waitress", pytest.param("gunicorn", marks=pytest.mark.skipif(
    os.name == "nt", reason="gunicorn runs on POSIX only"))])
def test_clients_holding_back_their_body_do_not_block_others(name: str, iris_artifact, tmp_path) -> None:
    """8 clients send headers and half a body, then wait: waitress and gunicorn buffer requests whole
    before a thread serves them, so a prediction is answered meanwhile and the 8 get 408s at the timeout.
    (granian cannot: see the module docstring.)"""
    port, _output, context = start(name, iris_artifact, tmp_path)
    head = post_head(Content_Length="100") + b'{"features": ['
    with context as (base, _proc), Tricklers(port, 8, head=head, interval=5.0, max_seconds=30) as tricklers:
        wait_trickling(tricklers, 1)
        predict(base)
        assert tricklers.closed == {}
        tricklers.wait_closed(REQUEST_TIMEOUT + 10)
        assert tricklers.open_ones() == []
        assert {answer(data)[0] for _seconds, data in tricklers.closed.values()} == {408}


# --- SIGTERM, url prefix, proxy headers: servers of their own ---------------------------------------


@pytest.mark.server
@pytest.mark.skipif(os.name == "nt", reason="SIGTERM is POSIX's; on Windows Ctrl+C stops the server")
@pytest.mark.parametrize("name", SERVERS)
def test_sigterm_answers_every_accepted_request_and_exits_0(name: str, iris_artifact, tmp_path) -> None:
    # granian gives each held request a thread of its own (see the module docstring): two more serve.
    extra = {"waitress": ("--threads", "2"), "granian": ("--threads", "4"), "gunicorn": ()}[name]
    port, output, context = start(name, iris_artifact, tmp_path, *extra)
    with context as (_base, proc):
        if name == "gunicorn":
            signalled = lambda: wait_for_line(output, "Handling signal: term", time.monotonic() + 30)  # noqa: E731
        elif name == "granian":
            signalled = lambda: wait_for_line(output, "Shutting down granian", time.monotonic() + 30)  # noqa: E731
        else:
            signalled = lambda: wait_for_line(output, "draining requests in flight", time.monotonic() + 30)  # noqa: E731
        drain_under_sigterm(proc, port, signalled)
    assert "Traceback" not in output.read_text(errors="replace")


def proxied_server(name: str, artifact: Path, folder: Path) -> tuple[int, Path, Any]:
    """``name`` under /api, believing X-Forwarded-For from 127.0.0.1 (gunicorn: SCRIPT_NAME, no proxy)."""
    if name == "gunicorn":
        return start(name, artifact, folder, ready="/api/health/live", SCRIPT_NAME="/api")
    return start(name, artifact, folder, "--url-prefix", "/api", "--trusted-proxy", "127.0.0.1",
                 "--trusted-proxy-headers", "x-forwarded-for", ready="/api/health/live")


@pytest.mark.server
@pytest.mark.parametrize("name", SERVERS)
def test_url_prefix_and_trusted_proxy_headers(name: str, iris_artifact, tmp_path) -> None:
    port, output, context = proxied_server(name, iris_artifact, tmp_path)
    with context as (base, _proc):
        response = requests.post(f"{base}/api/predict", json={"features": ROW}, timeout=30,
                                 headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.4", "X-Request-ID": "px-1"})
        assert response.status_code == 200 and response.json()["label"] == SETOSA
        assert requests.get(f"{base}/api/openapi.json", timeout=30).status_code == 200
        if name != "gunicorn":  # gunicorn refuses such a path with a 400 of its own
            outside = requests.get(f"{base}/health/live", timeout=30)
            assert outside.status_code == 404
        deadline = time.monotonic() + 10
        while not (records := [r for r in log_records(output) if r["request_id"] == "px-1"]):
            assert time.monotonic() < deadline, "the request was not logged"
            time.sleep(0.1)
    [record] = records
    assert record["path"] == "/predict"
    # The last hop, the one the trusted proxy saw; gunicorn never rewrites the client address.
    assert record["remote_addr"] == ("127.0.0.1" if name == "gunicorn" else "198.51.100.4")
