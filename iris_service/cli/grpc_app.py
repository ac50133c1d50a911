"""gRPC beside a server process's REST app: built on its data plane, started where the process serves.

``iris-service serve --grpc-port`` starts it in its one process. Under gunicorn
(``gunicorn.conf.py``) the app is built in the master before the fork, but
grpcio is not fork-safe: each worker starts its own gRPC server after the fork
(``post_worker_init``), on ``GRPC_PORT`` shared by all of them (SO_REUSEPORT:
the kernel spreads connections over the workers, as gunicorn's ``reuse_port``
does for HTTP), and drains it beside HTTP on SIGTERM (``servers/companions``).
The master checks once, before any worker, that the extra is installed and the
port free, so a mistake stops the start with one line instead of every worker
failing to boot.
"""
from __future__ import annotations

import socket
import sys
from typing import Any

from ..rest.state import state_of

WORKER_ATTRIBUTE = "iris_grpc_server"


def grpc_server(app: Any, host: str, port: int, *, reuse_port: bool = False) -> Any:
    """A bound (not started) gRPC server on ``app``'s data plane, metrics registry and tracer."""
    from ..grpc.server import create_server

    state = state_of(app)
    # The app's registry, so /metrics shows the gRPC series too (none with METRICS_ENABLED off).
    registry = getattr(state.metrics, "registry", None)
    tracer = getattr(state.tracing, "tracer", None)
    # The REST app's payload log: one queue and writer per process for both transports, one counter.
    payload_log = state.payload_log
    return create_server(state.dataplane, app.config, host=host, port=port, registry=registry, tracer=tracer,
                         reuse_port=reuse_port, payload_log=payload_log)


def configured_port(app: Any) -> int | None:
    """``GRPC_PORT`` of the app's checked settings (None: no gRPC)."""
    port = app.config.get("GRPC_PORT")
    return int(port) if port else None


def check_in_master(arbiter: Any) -> None:
    """Before any worker: stop gunicorn with one line if ``GRPC_PORT`` cannot be served.

    Only with ``preload_app`` (the shipped config): without it the master has no
    app to read, and each worker reports its own failure to boot.
    """
    if not arbiter.cfg.preload_app:
        return
    app = arbiter.app.wsgi()
    port = configured_port(app)
    if port is None:
        return
    from ..grpc import INSTALL_HINT, missing

    absent = missing()
    if absent:
        _halt(arbiter, f"GRPC_PORT needs {', '.join(absent)}: {INSTALL_HINT}")
    host = grpc_host(arbiter.cfg)
    try:
        # Without SO_REUSEPORT: a port some other server listens on, shared or not, is refused.
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
    except OSError as exc:
        _halt(arbiter, f"Cannot listen on {host}:{port} for gRPC: {exc.strerror or exc}")


def start_in_worker(worker: Any) -> None:
    """In a freshly forked worker: start gRPC on ``GRPC_PORT`` and hand it to the worker to drain."""
    app = worker.wsgi
    port = configured_port(app)
    if port is None:
        return
    host = grpc_host(worker.cfg)
    server = grpc_server(app, host, port, reuse_port=True)
    server.start()
    setattr(worker, WORKER_ATTRIBUTE, server)
    add = getattr(worker, "add_companion", None)
    if add is not None:
        add(server)
    shown = f"[{host}]" if ":" in host else host
    worker.log.info("iris-service gRPC on %s:%s (%s threads, pid %s)", shown, server.port, server.threads,
                    worker.pid)


def stop_in_worker(worker: Any) -> None:
    """``worker_exit``: stop gRPC if the worker class did not drain it already (not ours)."""
    server = getattr(worker, WORKER_ATTRIBUTE, None)
    if server is None or getattr(worker, "add_companion", None) is not None:
        return
    server.stop(worker.cfg.graceful_timeout).wait(worker.cfg.graceful_timeout + 1.0)


def grpc_host(cfg: Any) -> str:
    """The host of gunicorn's first TCP bind (gRPC listens beside HTTP); loopback for a Unix socket."""
    for address in cfg.address:
        if isinstance(address, tuple) and address[0]:
            return str(address[0])
    return "127.0.0.1"


def _halt(arbiter: Any, message: str) -> None:
    arbiter.log.error("Error: %s", message)
    sys.exit(1)
