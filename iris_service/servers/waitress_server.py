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
import logging
import os
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

from .deadlines import IDENT, REQUEST_TIMEOUT, chunk_framing_headroom
from .waitress_channel import IDLE_GRACE, DeadlineChannel, enforce_deadlines, idle

log = logging.getLogger("iris_service.servers.waitress_server")

#: Seconds the drain waits for requests in flight; below gunicorn.conf.py's
#: graceful_timeout budget and Kubernetes' default 30 s grace period.
DRAIN_TIMEOUT = 25.0
#: How often the drain looks for idle connections, in seconds.
_DRAIN_TICK = 0.05
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


def listening(server: Any) -> list[tuple[str, int]]:
    """The (host, port) pairs the server listens on, ports resolved."""
    if isinstance(server, BaseWSGIServer):
        return [(server.effective_host, server.effective_port)]
    return [tuple(pair) for pair in server.effective_listen]


def run(server: Any, *, drain_timeout: float = DRAIN_TIMEOUT, on_stop: Callable[[], Any] | None = None) -> bool:
    """Serve until stopped; on SIGTERM drain the requests in flight and return.

    Returns False when the drain ran out of time with connections still open.
    ``on_stop`` is called once SIGTERM stops the loop, before the drain: another
    server in the process (gRPC) starts its own drain then, beside this one.
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
        if on_stop is not None:
            on_stop()
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
            elif idle(channel) and now - channel.last_activity >= idle_grace:
                channel.handle_close()
        enforce_deadlines(socket_map, connection_limit=None)
        _poll(server, socket_map, _DRAIN_TICK)
    # cancel_pending=False: a request still queued for a thread is served, not dropped.
    server.task_dispatcher.shutdown(cancel_pending=False, timeout=max(0.0, deadline - time.monotonic()))
    wasyncore.close_all(socket_map)
    return drained


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


