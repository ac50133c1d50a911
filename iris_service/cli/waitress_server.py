"""The waitress server behind ``iris-service serve``, with a graceful stop on SIGTERM.

``waitress.serve`` dies on SIGTERM (the signal's default action), dropping every
request in flight, and cancels queued requests on Ctrl+C. Orchestrators (systemd,
Docker, Kubernetes) stop a service with SIGTERM, so ``run`` turns it into a drain:
stop listening, let every accepted request finish and flush, then return so the
process exits 0. The handler is installed while ``run`` runs, never at import.
"""

from __future__ import annotations

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

log = logging.getLogger("iris_service.cli.waitress_server")

IDENT = "iris-service"
#: Seconds the drain waits for requests in flight; below gunicorn.conf.py's
#: graceful_timeout budget and Kubernetes' default 30 s grace period.
DRAIN_TIMEOUT = 25.0
#: A connection silent this long during the drain is closed: a keep-alive client
#: that got its answer, or one that connected and never sent a request.
IDLE_GRACE = 1.0
#: How often the drain looks for idle connections, in seconds.
_DRAIN_TICK = 0.05

WSGIApp = Callable[..., Any]


def create(app: WSGIApp, **adjustments: Any) -> Any:
    """Bind a waitress server for ``app``; ``adjustments`` are waitress's settings.

    Raises ``ValueError`` for settings waitress refuses and ``OSError`` when the
    address cannot be bound.
    """
    adjustments.setdefault("ident", IDENT)
    socket_map: dict[int, Any] = {}
    try:
        return waitress.create_server(app, map=socket_map, **adjustments)
    except OSError:
        # waitress has made its socket and trigger before the bind failed.
        wasyncore.close_all(socket_map)
        raise


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
    ``run``: Ctrl+C stops it as it always did.
    """
    posix = os.name == "posix" and hasattr(signal, "SIGTERM")
    if not posix or threading.current_thread() is not threading.main_thread():
        server.run()
        return True
    socket_map = _socket_map(server)
    stop = threading.Event()
    wakeup = _SignalWakeup(socket_map)
    previous_handler = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    # The handler runs between two polls; the byte Python writes to the wakeup fd
    # makes the pending poll return at once instead of after its timeout.
    previous_fd = signal.set_wakeup_fd(wakeup.write_end.fileno(), warn_on_full_buffer=False)
    try:
        try:
            while not stop.is_set():
                _poll(server, socket_map, server.adj.asyncore_loop_timeout)
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
    for listener in [obj for obj in socket_map.values() if isinstance(obj, BaseWSGIServer)]:
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
            if _idle(channel) and now - channel.last_activity >= idle_grace:
                channel.handle_close()
        _poll(server, socket_map, _DRAIN_TICK)
    # cancel_pending=False: a request still queued for a thread is served, not dropped.
    server.task_dispatcher.shutdown(cancel_pending=False, timeout=max(0.0, deadline - time.monotonic()))
    wasyncore.close_all(socket_map)
    return drained


def _socket_map(server: Any) -> dict[int, Any]:
    return server._map if isinstance(server, BaseWSGIServer) else server.map


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
