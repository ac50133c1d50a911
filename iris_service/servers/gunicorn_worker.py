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

It also runs the worker's companions (gRPC, started after the fork by
``gunicorn.conf.py``) and drains them beside HTTP on SIGTERM (``companions.py``).

Written against gunicorn 27's gthread; with a gthread that lacks the methods it
builds on, :data:`ThreadWorker` is gthread itself and says so at start.
"""
from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.workers import gthread

from .companions import CompanionsMixin
from .deadlines import CROWDED_REQUEST_TIMEOUT, LINGER, timeout_response
from .gunicorn_connection import TIMEOUT_ENV, Connection, request_timeout
from .request_progress import CONTINUE, HAND_OVER, MORE, RequestProgress

#: Most bytes of requests a worker buffers at once; past it, requests go to
#: threads as they are, so that many slow uploads cannot exhaust the memory.
BUFFER_BUDGET = 32 << 20
#: Most bytes discarded while lingering after the answer (as gunicorn's close_graceful).
LINGER_BYTES = 64 << 10


class RequestTimeoutWorker(CompanionsMixin, gthread.ThreadWorker):
    """gthread, receiving each request in the event loop within the request timeout (and gRPC beside it)."""

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
        self.receiving: dict[Connection, None] = {}
        self.lingering: dict[Connection, float] = {}
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
        conn = Connection(self.cfg, client_sock, client_addr, listener.getsockname(), self)
        if self.buffering:
            self._receive(conn)
        else:
            conn.deadline = time.monotonic() + self.request_timeout
            self.enqueue_req(conn)

    def on_client_socket_readable(self, conn: Any, client: socket.socket) -> None:
        """A kept-alive connection has a new request: receive it before a thread serves it."""
        if not self.buffering or not isinstance(conn, Connection):
            super().on_client_socket_readable(conn, client)
            return
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._receive(conn)
        self._on_readable(conn, client)

    def _receive(self, conn: Connection) -> None:
        conn.receiving_since = time.monotonic()
        conn.deadline = conn.receiving_since + self.request_timeout
        conn.progress = RequestProgress()
        conn.sent_continue = False
        self.receiving[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: Connection, _sock: Any = None) -> None:
        data = _recv(conn.sock)
        if data is None:
            return
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

    def _stop_receiving(self, conn: Connection) -> None:
        self.receiving.pop(conn, None)
        if conn.progress is not None:
            self.buffered -= len(conn.progress.data)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _hand_over(self, conn: Connection, progress: RequestProgress) -> None:
        conn.pending = bytes(progress.data)
        conn.progress = None
        conn.data_ready = True  # gthread's wait for a first byte: it is here
        self.enqueue_req(conn)

    # --- in the thread -------------------------------------------------------------

    def handle_request(self, req: Any, conn: Any) -> Any:
        if getattr(conn, "sent_continue", False):
            req._expected_100_continue = False  # we sent it: a second one would precede the answer
        if not isinstance(conn, Connection):
            return super().handle_request(req, conn)
        conn.phase = "app"
        try:
            return super().handle_request(req, conn)
        finally:
            conn.phase = "done"

    def _keepalive_after(self, conn: Any, keepalive: Any) -> bool:
        if getattr(conn, "timed_out", False):
            return False  # part of the request is still unread
        if isinstance(conn, Connection):
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

    def _expired(self, conn: Connection, now: float) -> bool:
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

    def _time_out(self, conn: Connection, answer: bool = True) -> None:
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

    def linger(self, conn: Connection) -> None:
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

    def _on_linger_readable(self, conn: Connection, _sock: Any = None) -> None:
        data = _recv(conn.sock)
        if data is None:
            return
        conn.lingered += len(data)
        if not data or conn.lingered >= LINGER_BYTES:
            self._end_linger(conn)

    def _end_linger(self, conn: Connection) -> None:
        self.lingering.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        util.close(conn.sock)


def _recv(sock: socket.socket) -> bytes | None:
    """What a readable socket holds: ``b""`` once closed or reset by the client, None if nothing after all."""
    try:
        return sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def _gthread_is_compatible() -> bool:
    """Whether gthread has the methods and the connection attributes this worker builds on."""
    methods = ("accept", "enqueue_req", "on_client_socket_readable", "murder_keepalived", "handle_request",
               "_keepalive_after")
    return all(hasattr(gthread.ThreadWorker, name) for name in methods) and hasattr(gthread.TConn, "wait_for_data")


class _PlainThreadWorker(CompanionsMixin, gthread.ThreadWorker):  # pragma: no cover - only with another gunicorn
    """gthread itself, for a gunicorn whose gthread this worker was not written for."""

    def init_process(self) -> None:
        self.log.warning("iris_service.servers.gunicorn_worker: this gunicorn's gthread worker is not the one it "
                         "builds on; running plain gthread, without %s", TIMEOUT_ENV)
        super().init_process()


#: What gunicorn.conf.py names as its worker class.
ThreadWorker: type[gthread.ThreadWorker] = RequestTimeoutWorker if _gthread_is_compatible() else _PlainThreadWorker
