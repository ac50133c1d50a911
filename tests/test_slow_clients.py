"""Slow clients: a request must arrive whole within the request timeout, on every server we document.

A client sending one header byte every half second is never silent, so a timeout
on silence never closes it. Here such clients trickle against ``iris-service
serve`` (waitress) and against gunicorn with our ``gunicorn.conf.py`` while a
normal client predicts; the trickling connections must be answered 408 and closed
after the request timeout, and nobody else may wait for them. The last part checks
that a body larger than ``MAX_CONTENT_LENGTH`` is never spooled to disk; that it is
refused before it arrives, on every server, is in ``tests/test_server_matrix.py``.

Every server is a real process on a free loopback port, stopped by its PID; every
loop is bounded in count and time, and every socket is closed in ``finally``.
"""
from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import KNOWN_ROWS, ROOT, free_port, run_server, serve_args, server_env

ROW, _, SETOSA = KNOWN_ROWS[0]
#: The request timeout the servers get here, in seconds.
REQUEST_TIMEOUT = 4
#: How long after its deadline a trickling connection may still be open: the
#: servers look at their deadlines about every second, on a noisy shared machine.
SLACK = 4.0
TRICKLE_INTERVAL = 0.5
#: The head a trickling client sends, one byte at a time; it never ends.
SLOW_HEAD = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Padding: "
SMALL_LIMIT = 100_000
POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="gunicorn runs on POSIX only")


class Tricklers:
    """``count`` connections that each send one header byte every ``interval`` seconds.

    A background thread sends the bytes and watches for the server's answer and
    close; it stops by itself after ``max_seconds``, or when every connection is
    closed, or on ``stop``. ``closed[i]`` is (seconds from connect to the server's
    first reaction, everything the server sent).
    """

    def __init__(self, port: int, count: int, *, interval: float = TRICKLE_INTERVAL, max_seconds: float = 90.0,
                 head: bytes = SLOW_HEAD) -> None:
        self.port, self.count, self.interval, self.max_seconds, self.head = port, count, interval, max_seconds, head
        self.sockets: list[socket.socket] = []
        self.opened: list[float] = []
        self.reacted: dict[int, float] = {}
        self.received: dict[int, bytearray] = {}
        self.closed: dict[int, tuple[float, bytes]] = {}
        self.sent_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Tricklers:
        try:
            for _ in range(self.count):
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                sock.setblocking(False)
                self.sockets.append(sock)
                self.opened.append(time.monotonic())
            self._thread.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        for sock in self.sockets:
            sock.close()

    def open_ones(self) -> list[int]:
        return [i for i in range(len(self.sockets)) if i not in self.closed]

    def wait_closed(self, timeout: float) -> None:
        """Wait (bounded) until the server has closed every connection."""
        deadline = time.monotonic() + timeout
        while self.open_ones() and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.1)

    def _byte(self, step: int) -> bytes:
        return self.head[step:step + 1] if step < len(self.head) else b"a"

    def _closed_by_server(self, index: int) -> None:
        now = time.monotonic()
        first = self.reacted.setdefault(index, now)
        self.closed[index] = (first - self.opened[index], bytes(self.received.get(index, b"")))

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        step = 0
        while not self._stop.is_set() and self.open_ones() and time.monotonic() < deadline:
            for i in self.open_ones():
                if i in self.reacted:
                    continue  # answered: only read what is left
                try:
                    self.sockets[i].send(self._byte(step))
                    self.sent_bytes += 1
                except BlockingIOError:
                    pass
                except OSError:
                    self._closed_by_server(i)
            step += 1
            tick_end = time.monotonic() + self.interval
            while (remaining := tick_end - time.monotonic()) > 0 and self.open_ones():
                watched = {self.sockets[i]: i for i in self.open_ones()}
                readable, _, _ = select.select(list(watched), [], [], remaining)
                for sock in readable:
                    i = watched[sock]
                    self.reacted.setdefault(i, time.monotonic())
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:  # reset
                        data = b""
                    if data:
                        self.received.setdefault(i, bytearray()).extend(data)
                    else:
                        self._closed_by_server(i)


def answer(raw: bytes) -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body of one HTTP/1.1 answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


def assert_timed_out(tricklers: Tricklers) -> None:
    """Every trickling connection got a 408 JSON and was closed soon after the request timeout."""
    assert tricklers.open_ones() == [], f"{len(tricklers.open_ones())} trickling connections still open"
    for index, (seconds, data) in sorted(tricklers.closed.items()):
        assert seconds < REQUEST_TIMEOUT + SLACK, f"connection {index} closed after {seconds:.1f} s"
        status, headers, body = answer(data)
        assert status == 408, data[:200]
        assert headers["content-type"] == "application/json"
        assert body["code"] == 408
        assert body["message"] == f"The request did not arrive within {REQUEST_TIMEOUT} seconds."


def predict(base: str) -> dict[str, Any]:
    """One normal prediction on a new connection: 200, setosa (class 0)."""
    response = requests.post(f"{base}/predict", json={"features": ROW}, timeout=30, headers={"Connection": "close"})
    assert response.status_code == 200, response.text[:300]
    payload = response.json()
    assert payload["prediction"] == 0 and payload["label"] == SETOSA
    return payload


def wait_trickling(tricklers: Tricklers, sent_each: int) -> None:
    """Wait (bounded) until every connection has sent ``sent_each`` bytes."""
    deadline = time.monotonic() + 30
    while tricklers.sent_bytes < sent_each * tricklers.count:
        assert time.monotonic() < deadline, "the trickling clients could not send"
        time.sleep(0.05)


def exchange(port: int, request: bytes, timeout: float = 15.0) -> bytes:
    """Send ``request`` and read until the server closes; the server must answer within ``timeout``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def declared_body_request(length: int, body: bytes = b"") -> bytes:
    return (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {length}\r\n\r\n".encode() + body)


def assert_too_large(raw: bytes) -> None:
    status, headers, body = answer(raw)
    assert status == 413, raw[:300]
    assert headers["content-type"] == "application/json"
    assert body["message"] == f"The request body is larger than the limit of {SMALL_LIMIT} bytes."


# --- waitress (iris-service serve) -----------------------------------------------------------


@contextlib.contextmanager
def waitress_server(iris_artifact: Path, tmp_path: Path, *args: str, **env: str) -> Iterator[tuple[str, int, Any]]:
    port = free_port()
    with run_server(serve_args(port, "--server", "waitress", "--threads", "1", *args), server_env(iris_artifact, tmp_path, **env), port,
                    output=tmp_path / "waitress.log") as (base, proc):
        yield base, port, proc


@pytest.mark.server
def test_waitress_answers_others_while_30_clients_trickle_then_closes_them(iris_artifact, tmp_path) -> None:
    """30 trickling connections and one worker thread: a prediction is answered while they trickle."""
    with waitress_server(iris_artifact, tmp_path, "--request-timeout", str(REQUEST_TIMEOUT)) as (base, port, _), \
            Tricklers(port, 30) as tricklers:
        wait_trickling(tricklers, 2)
        predict(base)
        # Answered while every trickling connection was still open: nobody waited for them.
        assert tricklers.closed == {}
        tricklers.wait_closed(REQUEST_TIMEOUT + SLACK + 5)
        assert_timed_out(tricklers)
        predict(base)


@pytest.mark.server
def test_waitress_makes_room_at_the_connection_limit(iris_artifact, tmp_path) -> None:
    """30 trickling connections against a limit of 10 and a 60 s timeout: new clients are still served.

    At the limit the oldest requests still arriving after 2 s are closed, so a
    prediction waiting in the listen backlog gets in well before the timeout.
    """
    with waitress_server(iris_artifact, tmp_path, "--request-timeout", "60", "--connection-limit", "10") as (
            base, port, _), Tricklers(port, 30, max_seconds=60) as tricklers:
        wait_trickling(tricklers, 2)
        started = time.monotonic()
        predict(base)  # requests' own 30 s timeout bounds the wait
        waited = time.monotonic() - started
        shed = dict(tricklers.closed)
    assert waited < 30
    assert len(shed) >= 7, "no trickling connection was closed to make room"
    for _seconds, data in shed.values():
        assert answer(data)[0] == 408


@pytest.mark.server
@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="reads Linux's /proc/<pid>/io to count disk writes")
def test_waitress_spools_nothing_for_an_oversized_body(iris_artifact, tmp_path) -> None:
    """A 4 MB body over a 100 kB limit, sent whole: 413 JSON, and the server wrote none of it to disk.

    waitress keeps up to 512 KiB of a body in memory and spools the rest to a
    temporary file; refusing the request by its Content-Length leaves nothing to
    spool. /proc/<pid>/io counts every byte the server wrote through write():
    the temporary file would be millions, its log lines are a few hundred.
    """
    spool = tmp_path / "spool"
    spool.mkdir()
    body = b"[" + b"0," * 2_000_000 + b"0]"
    with waitress_server(iris_artifact, tmp_path, IRIS_SERVICE_MAX_CONTENT_LENGTH=str(SMALL_LIMIT),
                         TMPDIR=str(spool)) as (base, port, proc):
        predict(base)  # first-request work out of the measurement
        before = written_bytes(proc.pid)
        raw = exchange(port, declared_body_request(len(body), body), timeout=30)
        after = written_bytes(proc.pid)
        assert_too_large(raw)
        predict(base)
    assert after - before < 64 * 1024, f"the server wrote {after - before} bytes while refusing the body"
    assert list(spool.iterdir()) == []


def written_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/<pid>/io")


def test_serve_help_documents_the_request_timeout() -> None:
    from click.testing import CliRunner

    from iris_service.cli import main

    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--request-timeout" in result.output


def test_request_timeout_must_be_positive(iris_artifact, tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from iris_service.cli import main

    for name, value in server_env(iris_artifact, tmp_path).items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["serve", "--port", "0", "--request-timeout", "0"])
    assert result.exit_code == 2
    assert "--request-timeout" in result.output


# --- gunicorn with gunicorn.conf.py ---------------------------------------------------------------


@contextlib.contextmanager
def gunicorn_server(iris_artifact: Path, tmp_path: Path, **env: str) -> Iterator[tuple[str, int, Any, Path]]:
    """The shipped gunicorn.conf.py with the Docker/Kubernetes defaults: 2 workers x 4 threads."""
    pytest.importorskip("gunicorn")
    port = free_port()
    full_env = server_env(iris_artifact, tmp_path, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="2",
                          GUNICORN_THREADS="4", **env)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    args = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--chdir", str(ROOT)]
    output = tmp_path / "gunicorn.log"
    with run_server(args, full_env, port, output=output) as (base, proc):
        yield base, port, proc, output


@POSIX_ONLY
@pytest.mark.server
def test_gunicorn_answers_others_while_16_clients_trickle_then_closes_them(iris_artifact, tmp_path) -> None:
    """16 trickling connections, twice the 8 threads of the shipped config: predictions are still answered."""
    with gunicorn_server(iris_artifact, tmp_path, GUNICORN_REQUEST_TIMEOUT=str(REQUEST_TIMEOUT)) as (
            base, port, _proc, output), Tricklers(port, 16) as tricklers:
        wait_trickling(tricklers, 2)
        for _ in range(4):  # new connections: both workers get some
            predict(base)
        assert tricklers.closed == {}
        tricklers.wait_closed(REQUEST_TIMEOUT + SLACK + 5)
        assert_timed_out(tricklers)
        predict(base)
    text = output.read_text(errors="replace")
    assert "Traceback" not in text and "WORKER TIMEOUT" not in text


@POSIX_ONLY
@pytest.mark.server
def test_gunicorn_cuts_a_trickled_body_too_large_to_buffer_with_a_408(iris_artifact, tmp_path) -> None:
    """A 2 MB body is read by a worker thread, not buffered first; trickled, it is cut at the timeout."""
    head = declared_body_request(2_000_000) + b'{"instances": ['
    with gunicorn_server(iris_artifact, tmp_path, GUNICORN_REQUEST_TIMEOUT=str(REQUEST_TIMEOUT)) as (
            base, port, _proc, output), Tricklers(port, 1, head=head) as tricklers:
        tricklers.wait_closed(REQUEST_TIMEOUT + SLACK + 5)
        [(seconds, data)] = tricklers.closed.values()
        predict(base)
    assert seconds < REQUEST_TIMEOUT + SLACK
    status, headers, body = answer(data)
    assert status == 408 and headers["content-type"] == "application/json"
    assert body["message"] == f"The request did not arrive within {REQUEST_TIMEOUT} seconds."
    assert "Traceback" not in output.read_text(errors="replace")


@POSIX_ONLY
@pytest.mark.server
def test_gunicorn_is_not_stalled_by_clients_that_never_close(iris_artifact, tmp_path) -> None:
    """16 clients ask for ``Connection: close`` and then neither read nor close: others are still served.

    gthread's own close waits on its event loop up to 2 s for each such client to
    close (16 clients: half a minute without accepting anyone); ours lingers
    without blocking.
    """
    request = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    sockets: list[socket.socket] = []
    with gunicorn_server(iris_artifact, tmp_path) as (base, port, _proc, _output):
        try:
            for _ in range(16):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sockets.append(sock)
                sock.sendall(request)
            for _ in range(4):
                response = requests.get(f"{base}/health/live", timeout=5, headers={"Connection": "close"})
                assert response.status_code == 200
            predict(base)
            # Each of them got its answer, then the server's close.
            for sock in sockets:
                assert answer(exchange_rest(sock))[0] == 200
        finally:
            for sock in sockets:
                sock.close()


def exchange_rest(sock: socket.socket) -> bytes:
    """What the server sent on ``sock``, read until it closed."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# --- when a request counts as arrived (gunicorn worker) ------------------------------------------


@POSIX_ONLY
@pytest.mark.parametrize(
    ("pieces", "verdict"),
    [
        ([b"GET /health/live HTTP/1.1\r\nHost: a\r\n\r\n"], "ready"),
        ([b"GET /health/live HTTP/1.1\r\nHost: a\r\n"], "more"),
        ([b"POST /predict HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc"], "more"),
        ([b"POST /predict HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc", b"de"], "ready"),
        ([b"POST /predict HTTP/1.1\r\ncontent-length:  5 \r\n\r\nabcde"], "ready"),
        # One byte at a time: the head and body are found across the pieces.
        ([bytes([b]) for b in b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"], "ready"),
        ([b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"], "ready"),
        ([b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n"], "ready"),
        ([bytes([b]) for b in b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n"],
         "ready"),
        ([b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"], "more"),
        ([b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab"], "more"),
        # Unusual: gunicorn decides, at once.
        ([b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"], "hand over"),
        ([b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n"], "hand over"),
        ([b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"], "hand over"),
        ([b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"], "hand over"),
        ([b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n"], "hand over"),
        ([b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n"], "hand over"),
        ([b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"], "hand over"),
        ([b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"], "hand over"),
        ([b"GET / HTTP/1.1\nHost: a\n\n"], "hand over"),
        # Too large to buffer: the thread reads the body (or the app refuses it by its length).
        ([b"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n"], "hand over"),
        ([b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70_000], "hand over"),
    ],
)
def test_a_request_counts_as_arrived_once_its_head_and_body_are_in(pieces, verdict) -> None:
    from iris_service.servers.request_progress import RequestProgress

    progress = RequestProgress()
    verdicts = [progress.feed(piece) for piece in pieces]
    assert verdicts[-1] == verdict
    assert set(verdicts[:-1]) <= {"more"}  # nothing was decided before the last piece
    assert bytes(progress.data) == b"".join(pieces)  # every byte is kept for gunicorn's parser


@POSIX_ONLY
def test_the_100_continue_a_client_waits_for_is_noticed() -> None:
    from iris_service.servers.request_progress import RequestProgress

    progress = RequestProgress()
    assert progress.feed(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n") == "more"
    assert progress.expects_continue
    assert progress.feed(b"abcd") == "ready"


@POSIX_ONLY
@pytest.mark.parametrize(("value", "seconds"), [(None, 30.0), ("", 30.0), ("2", 2.0), ("0.5", 0.5)])
def test_gunicorn_request_timeout_comes_from_the_environment(value, seconds) -> None:
    from iris_service.servers.gunicorn_connection import request_timeout

    assert request_timeout({} if value is None else {"GUNICORN_REQUEST_TIMEOUT": value}) == seconds


@POSIX_ONLY
@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf", "nan"])
def test_a_bad_gunicorn_request_timeout_is_a_clear_error(value) -> None:
    from iris_service.servers.gunicorn_connection import request_timeout

    with pytest.raises(ValueError, match="GUNICORN_REQUEST_TIMEOUT must be a positive number of seconds"):
        request_timeout({"GUNICORN_REQUEST_TIMEOUT": value})
