"""The waitress server behind ``iris-service serve``, with a graceful stop on SIGTERM.

``waitress.serve`` dies on SIGTERM (the signal's default action), dropping every
request in flight, and cancels queued requests on Ctrl+C. Orchestrators (systemd,
Docker, Kubernetes) stop a service with SIGTERM, so ``run`` turns it into a drain:
stop listening, let every accepted request finish and flush, then return so the
process exits 0. The handler is installed while ``run`` runs, never at import.

waitress closes a connection only after ``channel_timeout`` seconds of silence, so
a client sending one header byte a second keeps its connection, and its place
under ``connection_limit``, forever. Our channels (:class:`DeadlineChannel`) must
receive each request whole within ``request_timeout``, and ``run``'s loop answers
the late ones 408 and closes them (:func:`enforce_deadlines`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.utilities import RequestEntityTooLarge

log = logging.getLogger(__name__)

IDENT = "iris-service"
#: Seconds the drain waits for requests in flight; below gunicorn.conf.py's
#: graceful_timeout budget and Kubernetes' default 30 s grace period.
DRAIN_TIMEOUT = 25.0
#: A connection silent this long during the drain is closed: a keep-alive client
#: that got its answer, or one that connected and never sent a request.
IDLE_GRACE = 1.0
#: How often the drain looks for idle connections, in seconds.
_DRAIN_TICK = 0.05
#: Seconds a client has to send a whole request, headers and body: from the
#: connection's accept for its first request, from the first byte for the next ones.
REQUEST_TIMEOUT = 30.0
#: While the open connections are at the connection limit, requests still arriving
#: after this many seconds (the oldest first) are closed to make room: new clients
#: wait in the listen backlog, and a request of a few kB arrives in milliseconds.
CROWDED_REQUEST_TIMEOUT = 2.0
#: Seconds a timed-out connection stays half-closed, its input discarded, so the
#: client reads our 408 instead of a reset (closing with unread input sends RST).
LINGER = 2.0
#: How often the serving loop looks for requests past their deadline, in seconds.
_DEADLINE_TICK = 0.25
#: Seconds between two log lines about connections the deadlines closed.
_LOG_EVERY = 10.0

WSGIApp = Callable[..., Any]


def create(app: WSGIApp, *, request_timeout: float = REQUEST_TIMEOUT, body_limit: int | None = None,
           **adjustments: Any) -> Any:
    """Bind a waitress server for ``app``; ``adjustments`` are waitress's settings.

    ``request_timeout`` bounds the time to receive each request (see
    :class:`DeadlineChannel`). ``body_limit`` is the app's ``MAX_CONTENT_LENGTH``:
    waitress then refuses a body declared larger before reading any of it, and
    the app answers the refusal (its JSON 413), instead of waitress spooling up to
    1 GiB to a temporary file first.

    Raises ``ValueError`` for settings waitress refuses and ``OSError`` when the
    address cannot be bound.
    """
    if not request_timeout > 0:
        raise ValueError(f"request_timeout must be positive, not {request_timeout}")
    adjustments.setdefault("ident", IDENT)
    if body_limit is not None:
        adjustments.setdefault("max_request_body_size", body_limit + 1 + chunk_framing_headroom(body_limit))
    socket_map: dict[int, Any] = {}
    try:
        server = waitress.create_server(app, map=socket_map, **adjustments)
    except OSError:
        # waitress has made its socket and trigger before the bind failed.
        wasyncore.close_all(socket_map)
        raise
    channel_class = functools.partial(DeadlineChannel, request_timeout=request_timeout, body_limit=body_limit)
    for listener in _listeners(socket_map):
        listener.channel_class = channel_class
    return server


def chunk_framing_headroom(body_limit: int) -> int:
    """Bytes allowed past ``body_limit`` before waitress itself refuses a chunked body.

    waitress counts a chunked body's framing (chunk sizes, line ends) against its
    ``max_request_body_size``; the app counts only the data. Chunks of 512 bytes
    or more add under 1.5 % of framing, so with this headroom waitress has received
    more than ``body_limit`` data bytes when it stops, and the app answers the 413.
    A Content-Length body is refused by its declared length, headroom or not.
    """
    return body_limit // 32 + 8192


def timeout_response(request_timeout: float) -> bytes:
    """The 408 sent to a client whose request did not arrive in time, in our JSON error shape."""
    body = json.dumps({
        "code": 408,
        "status": "Request Timeout",
        "message": f"The request did not arrive within {request_timeout:g} seconds.",
    }, separators=(",", ":")).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Server: {IDENT}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def listening(server: Any) -> list[tuple[str, int]]:
    """The (host, port) pairs the server listens on, ports resolved."""
    if isinstance(server, BaseWSGIServer):
        return [(server.effective_host, server.effective_port)]
    return [tuple(pair) for pair in server.effective_listen]


def run(server: Any, *, drain_timeout: float = DRAIN_TIMEOUT) -> bool:
    """Serve until stopped; on SIGTERM drain the requests in flight and return.

    Returns False when the drain ran out of time with connections still open.
    Off POSIX (Windows defines SIGTERM but never delivers it from outside), or off
    the main thread (signals cannot be handled there), this is waitress's own
    ``run``: Ctrl+C stops it as it always did. Either way the loop enforces the
    request deadlines between polls.
    """
    posix = os.name == "posix" and hasattr(signal, "SIGTERM")
    socket_map = _socket_map(server)
    serve_once = _ServingLoop(server, socket_map)
    if not posix or threading.current_thread() is not threading.main_thread():
        # waitress's own run, with our deadlines checked between polls.
        try:
            while True:
                serve_once()
        except (KeyboardInterrupt, SystemExit):
            server.task_dispatcher.shutdown()
        return True
    stop = threading.Event()
    wakeup = _SignalWakeup(socket_map)
    previous_handler = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    # The handler runs between two polls; the byte Python writes to the wakeup fd
    # makes the pending poll return at once instead of after its timeout.
    previous_fd = signal.set_wakeup_fd(wakeup.write_end.fileno(), warn_on_full_buffer=False)
    try:
        try:
            while not stop.is_set():
                serve_once()
        except (KeyboardInterrupt, SystemExit):
            # Ctrl+C: waitress's own behaviour (queued requests are cancelled).
            server.task_dispatcher.shutdown()
            return True
        log.info("SIGTERM: no longer accepting connections; draining requests in flight")
        drained = drain(server, socket_map, timeout=drain_timeout)
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGTERM, previous_handler)
        wakeup.close_both()
    if drained:
        log.info("drained; exiting")
    else:
        log.warning("drain timed out after %.0f s; closed the connections still open", drain_timeout)
    return drained


def drain(server: Any, socket_map: dict[int, Any], *, timeout: float, idle_grace: float = IDLE_GRACE) -> bool:
    """Close the listeners, finish every accepted request, then stop the threads.

    Connections already waiting in the listen backlog count as accepted: they
    are taken in before the socket closes, so only later ones are refused.
    """
    deadline = time.monotonic() + timeout
    for listener in _listeners(socket_map):
        _accept_backlog(listener, socket_map)
        # The plain dispatcher close: BaseWSGIServer.close would also close the
        # trigger that worker threads use to wake this loop when a response is ready.
        wasyncore.dispatcher.close(listener)
    drained = False
    while time.monotonic() < deadline:
        channels = [obj for obj in list(socket_map.values()) if isinstance(obj, HTTPChannel)]
        if not channels:
            drained = True
            break
        now = time.time()
        for channel in channels:
            if isinstance(channel, DeadlineChannel) and channel.lingering_until is not None:
                channel.close_now()  # its answer is sent; the rest is the client's
            elif _idle(channel) and now - channel.last_activity >= idle_grace:
                channel.handle_close()
        enforce_deadlines(socket_map, connection_limit=None)
        _poll(server, socket_map, _DRAIN_TICK)
    # cancel_pending=False: a request still queued for a thread is served, not dropped.
    server.task_dispatcher.shutdown(cancel_pending=False, timeout=max(0.0, deadline - time.monotonic()))
    wasyncore.close_all(socket_map)
    return drained


def enforce_deadlines(
    socket_map: dict[int, Any], connection_limit: int | None, now: float | None = None
) -> tuple[int, int]:
    """Time out the requests past their deadline; at ``connection_limit``, make room.

    Called from the serving loop between polls. At the limit waitress stops
    accepting, so a new client waits in the backlog until a connection closes:
    the lingering ones, idle keep-alive ones and the oldest requests still
    arriving after ``CROWDED_REQUEST_TIMEOUT`` are closed, a tenth of the limit at
    a time, so that a burst of new clients gets in too. Returns how many
    connections were timed out and how many were closed to make room.
    """
    now = time.monotonic() if now is None else now
    channels = [obj for obj in list(socket_map.values()) if isinstance(obj, DeadlineChannel)]
    late = [channel for channel in channels if channel.overdue(now)]
    for channel in late:
        channel.time_out()
    if connection_limit is None or len(socket_map) < connection_limit:
        return len(late), 0
    excess = len(socket_map) - connection_limit + max(1, connection_limit // 10)
    ranked = sorted((rank, id(channel), channel) for channel in channels if (rank := channel.room_rank(now)))
    for _rank, _id, channel in ranked[:excess]:
        channel.shed()
    return len(late), min(excess, len(ranked))


class _ServingLoop:
    """One poll of the server's sockets, then the deadlines (at most every ``_DEADLINE_TICK``).

    What the deadlines closed is logged as a sum at most every ``_LOG_EVERY``
    seconds: under a flood of slow clients, a line per tick would flood the log.
    """

    def __init__(self, server: Any, socket_map: dict[int, Any]) -> None:
        self.server = server
        self.socket_map = socket_map
        self.next_check = 0.0
        self.timed_out = self.shed = 0
        self.next_log = 0.0

    def __call__(self) -> None:
        _poll(self.server, self.socket_map, self.server.adj.asyncore_loop_timeout)
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + _DEADLINE_TICK
        timed_out, shed = enforce_deadlines(self.socket_map, self.server.adj.connection_limit, now)
        self.timed_out += timed_out
        self.shed += shed
        if (self.timed_out or self.shed) and now >= self.next_log:
            self.next_log = now + _LOG_EVERY
            if self.timed_out:
                log.info("closed %d connection(s) whose request did not arrive in time", self.timed_out)
            if self.shed:
                log.warning("at the connection limit (%d): closed %d slow or idle connection(s) to make room",
                            self.server.adj.connection_limit, self.shed)
            self.timed_out = self.shed = 0


def _socket_map(server: Any) -> dict[int, Any]:
    return server._map if isinstance(server, BaseWSGIServer) else server.map


def _listeners(socket_map: dict[int, Any]) -> list[BaseWSGIServer]:
    return [obj for obj in socket_map.values() if isinstance(obj, BaseWSGIServer)]


def _poll(server: Any, socket_map: dict[int, Any], timeout: float) -> None:
    wasyncore.loop(timeout=timeout, map=socket_map, use_poll=server.adj.asyncore_use_poll, count=1)


def _accept_backlog(listener: BaseWSGIServer, socket_map: dict[int, Any]) -> None:
    """Turn connections the kernel already completed into channels, up to the backlog size."""
    for _ in range(listener.adj.backlog):
        before = len(socket_map)
        listener.handle_accept()
        if len(socket_map) == before:
            return


def _idle(channel: HTTPChannel) -> bool:
    """No request being received, queued or answered, nothing to send, nothing unread.

    The last check keeps a keep-alive client's next request, already in the
    socket buffer but not yet read by the loop, from being cut off.
    """
    if (
        channel.requests
        or channel.request is not None
        or channel.total_outbufs_len
        or channel.will_close
        or channel.close_when_flushed
    ):
        return False
    try:
        readable, _, _ = select.select([channel.socket], [], [], 0)
    except (OSError, ValueError):  # closed meanwhile: the loop will drop it
        return False
    return not readable


class _SignalWakeup(wasyncore.dispatcher):
    """The read end of ``signal.set_wakeup_fd``, polled with the server's sockets."""

    def __init__(self, socket_map: dict[int, Any]) -> None:
        read_end, self.write_end = socket.socketpair()
        self.write_end.setblocking(False)
        super().__init__(read_end, map=socket_map)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        try:
            self.recv(512)
        except OSError:
            pass

    def close_both(self) -> None:
        self.close()
        self.write_end.close()


class DeadlineChannel(HTTPChannel):
    """A waitress channel that must receive each request whole within ``request_timeout``.

    waitress's ``channel_timeout`` counts silence only; a client trickling its
    headers is never silent. This channel remembers since when it has been
    receiving its current request (from the accept for a first request, from the
    first byte for the next ones), and :func:`enforce_deadlines` answers 408 to
    one that takes longer. The clock is pushed forward while a previous request
    on the connection is served, because the channel does not read then.

    A trickling client never holds a worker thread: waitress hands a request to
    a thread only once it has arrived whole. With ``body_limit`` set, a body
    waitress refused by its size is handed to the app without the body, so that
    the app answers its own JSON 413, and the connection then lingers (see
    :meth:`handle_close`) so the client reads the answer rather than a reset.
    """

    def __init__(self, server: Any, sock: socket.socket, addr: Any, adj: Any, map: Any = None, *,  # noqa: A002
                 request_timeout: float = REQUEST_TIMEOUT, body_limit: int | None = None) -> None:
        self.request_timeout = request_timeout
        self.body_limit = body_limit
        #: monotonic time the current request started arriving; None between requests.
        self.receiving_since: float | None = time.monotonic()
        #: Seconds to linger after the answer, when input may still be arriving.
        self.linger_for: float | None = None
        #: monotonic deadline of the linger, once it has begun.
        self.lingering_until: float | None = None
        super().__init__(server, sock, addr, adj, map)

    # --- receiving ------------------------------------------------------------------

    def received(self, data: bytes) -> bool:
        if self.receiving_since is None:
            self.receiving_since = time.monotonic()
        before = self.request
        result = super().received(data)
        if self.request is None:
            self.receiving_since = None  # every request in ``data`` arrived whole
        elif before is not None and self.request is not before:
            self.receiving_since = time.monotonic()  # one finished, the next began
        return result

    def overdue(self, now: float) -> bool:
        """True when a request has been arriving for longer than ``request_timeout``."""
        if self.lingering_until is not None:
            if now >= self.lingering_until:
                self.close_now()
            return False
        if self.receiving_since is None or self.will_close or self.close_when_flushed:
            return False
        if self.requests or self.total_outbufs_len:
            # Serving or sending an earlier answer: the channel is not reading, so
            # the time is not the client's.
            self.receiving_since = now
            return False
        return now - self.receiving_since >= self.request_timeout

    def time_out(self) -> None:
        """Answer 408 if part of a request arrived, then close after the answer is sent."""
        self.receiving_since = None
        if self.request is None:
            self.will_close = True  # a connection that never sent anything: just close
            return
        with self.requests_lock:
            self.request.close()  # its body buffer, maybe a temporary file
            self.request = None
        response = timeout_response(self.request_timeout)
        with self.outbuf_lock:
            self.outbufs[-1].append(response)
            self.current_outbuf_count += len(response)
            self.total_outbufs_len += len(response)
        self.linger_for = LINGER
        self.close_when_flushed = True

    # --- making room at the connection limit -------------------------------------------

    def room_rank(self, now: float) -> tuple[int, float] | None:
        """Order in which to close this channel to make room; None to keep it.

        Lingering and closing ones first (their answer is out), then the longest
        idle keep-alive ones, then the requests arriving the longest.
        """
        if self.lingering_until is not None or self.will_close or self.close_when_flushed:
            return (0, 0.0)
        if self.requests or self.total_outbufs_len:
            return None  # being served
        if self.request is None:
            return (1, self.last_activity) if _idle(self) and time.time() - self.last_activity >= IDLE_GRACE else None
        since = self.receiving_since
        crowded_timeout = min(CROWDED_REQUEST_TIMEOUT, self.request_timeout)
        return (2, since) if since is not None and now - since >= crowded_timeout else None

    def shed(self) -> None:
        """Close now to free a place; a 408 first if part of a request arrived."""
        if self.request is not None and not self.total_outbufs_len and self.lingering_until is None:
            try:
                self.socket.send(timeout_response(self.request_timeout))
            except OSError:
                pass
        self.close_now()

    # --- a body refused by its size --------------------------------------------------

    def service(self) -> None:
        request = self.requests[0]
        if self._app_refuses(request):
            # The app sees a Content-Length over its limit and answers its 413
            # without reading the body; nothing else may follow on the connection.
            # A chunked body has none: the bytes received so far, already more
            # than the limit, stand for it (Werkzeug would otherwise read up to
            # the limit and stop silently, a truncated body).
            request.error = None
            if request.chunked:
                request.headers["CONTENT_LENGTH"] = str(len(request.body_rcv))
            request.headers["CONNECTION"] = "close"
            self.linger_for = self.request_timeout
        super().service()

    def _app_refuses(self, request: Any) -> bool:
        if self.body_limit is None or not isinstance(request.error, RequestEntityTooLarge):
            return False
        if request.chunked:
            return request.body_rcv is not None and len(request.body_rcv) > self.body_limit
        return request.content_length > self.body_limit

    # --- lingering close ---------------------------------------------------------------

    def handle_close(self) -> None:
        """Close; or, after an answer that input may still follow, half-close and linger.

        Closing a socket with unread input makes the kernel send RST, and a client
        still sending may then never read the answer. Lingering sends FIN after the
        answer and discards what still arrives until the client closes or
        ``linger_for`` seconds pass.
        """
        if (self.linger_for is not None and self.lingering_until is None and self.will_close
                and not self.total_outbufs_len and self.socket is not None):
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            else:
                self.lingering_until = time.monotonic() + self.linger_for
                self.will_close = False
                return
        self.close_now()

    def close_now(self) -> None:
        self.lingering_until = None
        self.linger_for = None
        super().handle_close()

    def readable(self) -> bool:
        return True if self.lingering_until is not None else bool(super().readable())

    def writable(self) -> bool:
        return False if self.lingering_until is not None else bool(super().writable())

    def handle_read(self) -> None:
        if self.lingering_until is None:
            super().handle_read()
            return
        try:
            data = self.socket.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close_now()
