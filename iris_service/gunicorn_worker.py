"""A gunicorn gthread worker that receives each request whole before a thread serves it.

gunicorn's gthread worker gives a connection to a thread as soon as its first
bytes arrive, and the thread reads the headers from a blocking socket with no
deadline: a client sending one header byte a second holds a thread for as long
as it likes, and 8 of them (the shipped 2 workers x 4 threads) leave everyone
else unanswered. This worker reads each request in the worker's event loop,
without blocking, as waitress does, and gives it to a thread only once its head
and body have arrived (:class:`RequestProgress` says when). A request must
arrive within ``GUNICORN_REQUEST_TIMEOUT`` seconds (30 by default), counted from
the accept, or from its first byte on a keep-alive connection; a late one is
answered 408 in our JSON shape and closed.

Bodies up to ``BUFFER_LIMIT`` are buffered, up to ``BUFFER_BUDGET`` per worker at
once; a larger one (or one past the budget) goes to a thread after its head and
is read there, still within the deadline: past it the app answers 408.

gthread also closes a connection (after ``Connection: close`` or an error) on its
event loop with ``util.close_graceful``, which waits up to 2 s for the client to
close: a client that never does stalls every connection of the worker for 2 s.
Here that lingering is done by the event loop without blocking.

Written against gunicorn 27's gthread; with a gthread that lacks the methods it
builds on, :data:`ThreadWorker` is gthread itself and says so at start.
"""
from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.http.errors import NoMoreData
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers import gthread
from werkzeug.exceptions import RequestTimeout

from .server import CROWDED_REQUEST_TIMEOUT, LINGER, REQUEST_TIMEOUT, timeout_response

#: The environment variable that sets the request timeout, in seconds.
TIMEOUT_ENV = "GUNICORN_REQUEST_TIMEOUT"
#: Largest request (head and body) buffered before a thread gets it, in bytes.
BUFFER_LIMIT = 1 << 20
#: Most bytes of requests a worker buffers at once; past it, requests go to
#: threads as they are, so that many slow uploads cannot exhaust the memory.
BUFFER_BUDGET = 32 << 20
#: A head longer than this goes to gunicorn, whose limits refuse it.
HEAD_LIMIT = 64 << 10
#: Most bytes discarded while lingering after the answer (as gunicorn's close_graceful).
LINGER_BYTES = 64 << 10
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

MORE, READY, HAND_OVER = "more", "ready", "hand over"


def request_timeout(environ: Mapping[str, str]) -> float:
    """The request timeout ``GUNICORN_REQUEST_TIMEOUT`` sets; ``REQUEST_TIMEOUT`` without it."""
    value = environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return REQUEST_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{TIMEOUT_ENV} must be a positive number of seconds, not {value!r}")
    return seconds


class RequestProgress:
    """How far the bytes received so far go towards one whole HTTP/1.x request.

    It only decides when the bytes go to gunicorn, whose parser still reads every
    one of them: anything unusual (several Content-Length, a transfer coding other
    than chunked, a malformed chunk, a bare-LF head) is handed over at once and
    answered by gunicorn as it would be anyway. Each byte is scanned once, so a
    client sending a byte at a time costs no more than one sending it all.
    """

    def __init__(self, limit: int = BUFFER_LIMIT) -> None:
        self.data = bytearray()
        self.limit = limit
        #: The head asks for ``100 Continue`` before the client sends its body.
        self.expects_continue = False
        self._scanned = 0
        self._head_end: int | None = None
        self._body_end: int | None = None  # with a Content-Length: where the request ends
        self._chunk_at: int | None = None  # chunked: where the next chunk-size line starts
        self._in_trailers = False

    def feed(self, data: bytes) -> str:
        """Add ``data``; MORE to wait for more, READY or HAND_OVER to give it to gunicorn."""
        self.data += data
        if len(self.data) > self.limit:
            return HAND_OVER
        if self._head_end is None:
            return self._head()
        if self._body_end is not None:
            return READY if len(self.data) >= self._body_end else MORE
        return self._chunks()

    def _head(self) -> str:
        if self.data.startswith((b"\r", b"\n")):
            return HAND_OVER  # empty lines before the request line: gunicorn's call
        start = max(0, self._scanned - 3)
        end = self.data.find(b"\r\n\r\n", start)
        if end < 0:
            if self.data.find(b"\n\n", start) >= 0 or len(self.data) > HEAD_LIMIT:
                return HAND_OVER
            self._scanned = len(self.data)
            return MORE
        self._head_end = end + 4
        lengths, codings = [], []
        for line in bytes(self.data[:end]).split(b"\r\n")[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                return HAND_OVER  # malformed, or obsolete line folding
            name, value = name.lower(), value.strip()
            if name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                codings.append(value.lower())
            elif name == b"expect" and value.lower() == b"100-continue":
                self.expects_continue = True
        if codings:
            if lengths or codings != [b"chunked"]:
                return HAND_OVER
            self._chunk_at = self._head_end
            return self._chunks()
        if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
            return HAND_OVER
        self._body_end = self._head_end + (int(lengths[0]) if lengths else 0)
        if self._body_end > self.limit:
            return HAND_OVER  # the thread reads it (or the app refuses it by its length)
        return READY if len(self.data) >= self._body_end else MORE

    def _chunks(self) -> str:
        data, pos = self.data, self._chunk_at
        assert pos is not None
        while True:
            line_end = data.find(b"\r\n", pos)
            if line_end < 0:
                return HAND_OVER if len(data) - pos > 4096 else MORE
            if self._in_trailers:
                if line_end == pos:
                    return READY  # the empty line after the trailers
                pos = self._chunk_at = line_end + 2
                continue
            size = bytes(data[pos:line_end]).split(b";", 1)[0].strip()
            if not size or size.strip(b"0123456789abcdefABCDEF"):
                return HAND_OVER
            chunk_end = line_end + 2 + int(size, 16)
            if size.strip(b"0") == b"":
                self._in_trailers = True
                pos = self._chunk_at = line_end + 2
                continue
            if chunk_end + 2 > self.limit:
                return HAND_OVER
            if len(data) < chunk_end + 2:
                return MORE
            if data[chunk_end:chunk_end + 2] != b"\r\n":
                return HAND_OVER
            pos = self._chunk_at = chunk_end + 2


class _DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader, bounded by the connection's request deadline."""

    def __init__(self, conn: _Connection, sock: socket.socket, max_chunk: int) -> None:
        super().__init__(sock, max_chunk)
        self.conn = conn

    def chunk(self, size_hint: int | None = None) -> bytes:
        deadline = self.conn.deadline
        if deadline is None:
            return super().chunk(size_hint)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return self.conn.request_late()
        previous = self.sock.gettimeout()
        self.sock.settimeout(remaining if previous is None else min(previous, remaining))
        try:
            return super().chunk(size_hint)
        except TimeoutError:
            if time.monotonic() < deadline:
                raise  # the caller's own, shorter timeout (gunicorn's keep-alive drain)
            return self.conn.request_late()
        finally:
            self.sock.settimeout(previous)


class _Connection(gthread.TConn):
    """gthread's connection, with a request deadline and the bytes received in the event loop."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any, worker: RequestTimeoutWorker) -> None:
        super().__init__(cfg, sock, client, server)
        self.worker = worker
        #: monotonic time by which the current request must have arrived.
        self.deadline: float | None = None
        self.progress: RequestProgress | None = None
        #: Bytes the event loop received, for the thread's parser to read first.
        self.pending = b""
        #: monotonic time the event loop started receiving the current request.
        self.receiving_since = 0.0
        self.sent_continue = False
        self.timed_out = False
        #: "head" while gunicorn parses, "app" while the app runs, "done" after.
        self.phase = "head"
        #: Bytes discarded while lingering.
        self.lingered = 0

    def init(self) -> None:
        """gthread's set-up in the thread, then our reader and the buffered bytes."""
        super().init()
        unreader = getattr(self.parser, "unreader", None)
        if type(unreader) is SocketUnreader:
            bounded = _DeadlineUnreader(self, unreader.sock, unreader.mxchunk)
            bounded.buf = unreader.buf
            self.parser.unreader = unreader = bounded
        if self.pending and unreader is not None:
            unreader.buf.seek(0, os.SEEK_END)
            unreader.buf.write(self.pending)
            self.pending = b""
        if self.deadline is None:  # a pipelined request, read from what is buffered
            self.deadline = time.monotonic() + self.worker.request_timeout
        self.phase = "head"

    def request_late(self) -> bytes:
        """The deadline passed while a thread reads: end the request as its phase allows."""
        self.timed_out = True
        message = f"The request did not arrive within {self.worker.request_timeout:g} seconds."
        if self.phase == "app":
            # Raised inside the app's read of the body: Flask answers it as a JSON 408.
            raise RequestTimeout(description=message)
        if self.phase == "head":
            try:
                self.sock.settimeout(1.0)
                self.sock.sendall(self.worker.late_answer)
            except OSError:
                pass
            raise NoMoreData()  # gunicorn drops the connection quietly
        # Draining the rest of the body after the answer: gunicorn then closes.
        raise TimeoutError("request deadline passed")

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self.worker.linger(self)
        else:
            super().close()


class RequestTimeoutWorker(gthread.ThreadWorker):
    """gthread, receiving each request in the event loop within the request timeout."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout(os.environ)
        self.late_answer = timeout_response(self.request_timeout)
        # TLS, cleartext HTTP/2 and the PROXY and uwsgi protocols read their first
        # bytes in the thread: there, threads read under the deadline instead.
        self.buffering = (
            not self.cfg.is_ssl
            and getattr(self.cfg, "http2_cleartext", "off") in ("off", None)
            and getattr(self.cfg, "protocol", "http") == "http"
            and getattr(self.cfg, "proxy_protocol", "off") in ("off", False, None)
        )
        self.receiving: dict[_Connection, None] = {}
        self.lingering: dict[_Connection, float] = {}
        self.buffered = 0

    # --- receiving in the event loop -------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = _Connection(self.cfg, client_sock, client_addr, listener.getsockname(), self)
        if self.buffering:
            self._receive(conn)
        else:
            conn.deadline = time.monotonic() + self.request_timeout
            self.enqueue_req(conn)

    def on_client_socket_readable(self, conn: Any, client: socket.socket) -> None:
        """A kept-alive connection has a new request: receive it before a thread serves it."""
        if not self.buffering or not isinstance(conn, _Connection):
            super().on_client_socket_readable(conn, client)
            return
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._receive(conn)
        self._on_readable(conn, client)

    def _receive(self, conn: _Connection) -> None:
        conn.receiving_since = time.monotonic()
        conn.deadline = conn.receiving_since + self.request_timeout
        conn.progress = RequestProgress()
        conn.sent_continue = False
        self.receiving[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: _Connection, _sock: Any = None) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # reset by the client
        progress = conn.progress
        assert progress is not None
        if not data:
            self._stop_receiving(conn)
            if progress.data:
                self._hand_over(conn, progress)  # gunicorn answers what arrived
            else:
                self.nr_conns -= 1
                conn.close()
            return
        verdict = progress.feed(data)
        self.buffered += len(data)
        if verdict == MORE and self.buffered > BUFFER_BUDGET:
            verdict = HAND_OVER
        if verdict != MORE:
            self._stop_receiving(conn)
            self._hand_over(conn, progress)
        elif progress.expects_continue and not conn.sent_continue:
            conn.sent_continue = True
            try:
                conn.sock.send(CONTINUE)
            except OSError:
                pass

    def _stop_receiving(self, conn: _Connection) -> None:
        self.receiving.pop(conn, None)
        if conn.progress is not None:
            self.buffered -= len(conn.progress.data)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _hand_over(self, conn: _Connection, progress: RequestProgress) -> None:
        conn.pending = bytes(progress.data)
        conn.progress = None
        conn.data_ready = True  # gthread's wait for a first byte: it is here
        self.enqueue_req(conn)

    # --- in the thread -------------------------------------------------------------

    def handle_request(self, req: Any, conn: Any) -> Any:
        if getattr(conn, "sent_continue", False):
            req._expected_100_continue = False  # we sent it: a second one would precede the answer
        if not isinstance(conn, _Connection):
            return super().handle_request(req, conn)
        conn.phase = "app"
        try:
            return super().handle_request(req, conn)
        finally:
            conn.phase = "done"

    def _keepalive_after(self, conn: Any, keepalive: Any) -> bool:
        if getattr(conn, "timed_out", False):
            return False  # part of the request is still unread
        if isinstance(conn, _Connection):
            conn.deadline = None  # answered; the next request gets its own deadline
        return bool(super()._keepalive_after(conn, keepalive))

    # --- back in the event loop --------------------------------------------------------

    def murder_keepalived(self, force: bool = False) -> None:
        """gthread's keep-alive expiry, then the requests past their deadline and the lingering ones."""
        super().murder_keepalived(force)
        now = time.monotonic()
        for conn in [c for c in self.receiving if force or self._expired(c, now)]:
            self._time_out(conn, answer=not force)
        if not force and self.nr_conns >= self.worker_connections:
            self._make_room(now)
        for conn in [c for c, until in self.lingering.items() if force or until <= now]:
            self._end_linger(conn)

    def _expired(self, conn: _Connection, now: float) -> bool:
        """Past its deadline; or, once the worker stops, silent since the accept for a while.

        A stopping gthread keeps idle keep-alive connections ``STOP_KEEPALIVE_LINGER``
        seconds at most; a connection that never sent anything gets the same, rather
        than holding the stop for the whole request timeout.
        """
        if conn.deadline is not None and conn.deadline <= now:
            return True
        if self.alive or conn.progress is None or conn.progress.data:
            return False
        return now - conn.receiving_since >= getattr(gthread, "STOP_KEEPALIVE_LINGER", 2.0)

    def _time_out(self, conn: _Connection, answer: bool = True) -> None:
        """Answer 408 (if part of a request arrived) and close, lingering so the client reads it."""
        progress = conn.progress
        self._stop_receiving(conn)
        self.nr_conns -= 1
        if answer and progress is not None and progress.data:
            try:
                conn.sock.send(self.late_answer)
            except OSError:
                pass
            self.linger(conn)
        else:
            util.close(conn.sock)

    def _make_room(self, now: float) -> None:
        """At worker_connections, close the requests arriving the longest (2 s and more)."""
        crowded = min(CROWDED_REQUEST_TIMEOUT, self.request_timeout)
        slow = sorted((c for c in self.receiving if now - c.receiving_since >= crowded),
                      key=lambda c: c.receiving_since)
        for conn in slow[: max(1, self.worker_connections // 10)]:
            self._time_out(conn)

    # --- lingering close, without blocking -----------------------------------------------

    def linger(self, conn: _Connection) -> None:
        """Send FIN after the answer, discard what the client still sends, close at EOF or after ``LINGER``."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_linger_readable, conn))
        except (OSError, KeyError, ValueError):
            util.close(conn.sock)
            return
        conn.progress = None
        conn.pending = b""
        self.lingering[conn] = time.monotonic() + LINGER
        conn.lingered = 0

    def _on_linger_readable(self, conn: _Connection, _sock: Any = None) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.lingered += len(data)
        if not data or conn.lingered >= LINGER_BYTES:
            self._end_linger(conn)

    def _end_linger(self, conn: _Connection) -> None:
        self.lingering.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        util.close(conn.sock)


def _gthread_is_compatible() -> bool:
    """Whether gthread has the methods and the connection attributes this worker builds on."""
    methods = ("accept", "enqueue_req", "on_client_socket_readable", "murder_keepalived", "handle_request",
               "_keepalive_after")
    return all(hasattr(gthread.ThreadWorker, name) for name in methods) and hasattr(gthread.TConn, "wait_for_data")


class _PlainThreadWorker(gthread.ThreadWorker):  # pragma: no cover - only with another gunicorn
    """gthread itself, for a gunicorn whose gthread this worker was not written for."""

    def init_process(self) -> None:
        self.log.warning("iris_service.gunicorn_worker: this gunicorn's gthread worker is not the one it "
                         "builds on; running plain gthread, without %s", TIMEOUT_ENV)
        super().init_process()


#: What gunicorn.conf.py names as its worker class.
ThreadWorker: type[gthread.ThreadWorker] = RequestTimeoutWorker if _gthread_is_compatible() else _PlainThreadWorker
