"""granian under ``iris-service serve --server granian``: our WSGI app in granian's worker processes.

granian runs the app in worker processes it spawns (forked on Linux, started
afresh on macOS and Windows) and calls ``loader()`` in each to get the WSGI app.
On SIGTERM its main process stops the workers, each finishing the requests it
has accepted, and waits up to ``drain_timeout`` before killing one that hangs.

What granian does not do, and waitress does: bound the time a client takes to
send a request *body* (a client holding its body back holds a blocking thread
until it disconnects; granian issue #728), close idle keep-alive connections
after ``--channel-timeout``, and run more than one worker on Windows.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The version range with wheels for Linux, macOS and Windows, tested here.
REQUIREMENT = "granian>=2.5,<3"
INSTALL_HINT = f"pip install '{REQUIREMENT}' (or serve with --server waitress)"

log = logging.getLogger("iris_service.servers.granian_server")


def missing() -> bool:
    """True when granian cannot be imported (not installed, or no wheel for this platform)."""
    try:
        import granian  # noqa: F401
    except ImportError:
        return True
    return False


@dataclass(frozen=True)
class GranianSettings:
    """What ``serve`` tunes: address, processes, threads, admission and stop."""

    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 1
    #: Python threads per worker that run the app (granian's ``blocking_threads``).
    threads: int = 1
    #: Rust threads per worker doing the network I/O (granian's ``runtime_threads``).
    runtime_threads: int = 1
    #: Requests a worker admits at once; more wait (granian's ``backpressure``).
    backpressure: int = 100
    #: Seconds a client has to send its request headers (granian's HTTP/1 header read timeout).
    header_timeout: float = 30.0
    drain_timeout: float = 25.0
    backlog: int = 1024

    def check(self) -> None:
        """Refuse what granian would silently change or refuse later, in one line each."""
        if self.workers > 1 and sys.platform == "win32":
            raise ValueError("granian runs one worker on Windows (its socket sharing fails there): "
                             "drop --workers, or run one process per port behind a load balancer")
        if self.backpressure < self.threads:
            raise ValueError(f"--connection-limit {self.backpressure} is below --threads {self.threads}: "
                             "threads beyond it would never get a request")


class GranianServer:
    """A granian ``Server`` and the loader of its app: ``serve()`` blocks until it has stopped."""

    def __init__(self, server: Any, loader: Callable[[], Any]) -> None:
        self.server = server
        self.loader = loader

    def serve(self) -> None:
        """Serve until SIGTERM or Ctrl+C; granian drains its workers, then this returns (exit 0)."""
        self.server.serve(target_loader=self.loader, wrap_loader=False)


def check_free(host: str, port: int) -> None:
    """Raise ``OSError`` when ``host:port`` cannot be bound.

    granian binds inside ``serve`` and logs a failure instead of raising it; a
    plain bind first turns a busy port into our one-line error.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: a port in use must not be shared
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        elif os.name == "posix":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def create(loader: Callable[[], Any], settings: GranianSettings) -> GranianServer:
    """A granian server for the WSGI app ``loader()`` returns in each worker (not yet serving).

    ``loader`` must be picklable where workers are spawned (macOS, Windows): a
    module-level function or a ``functools.partial`` of one. Raises ``ValueError``
    for settings granian cannot honour and ``OSError`` for an address in use.
    """
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.server import Server

    settings.check()
    check_free(settings.host, settings.port)
    server = Server(
        # Only named in the process title and logs: the app comes from ``loader``.
        "iris_service",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.WSGI,
        http=HTTPModes.http1,
        workers=settings.workers,
        blocking_threads=settings.threads,
        runtime_threads=settings.runtime_threads,
        backpressure=settings.backpressure,
        backlog=settings.backlog,
        http1_settings=HTTP1Settings(header_read_timeout=max(1, int(settings.header_timeout * 1000))),
        # A worker that dies is replaced; one still busy drain_timeout after SIGTERM is killed.
        respawn_failed_workers=True,
        workers_kill_timeout=max(1, math.ceil(settings.drain_timeout)),
        # Our request log writes one line per request; granian's own would repeat it.
        log_access=False,
        websockets=False,
    )
    return GranianServer(server, loader)
