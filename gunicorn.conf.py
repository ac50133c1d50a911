"""Gunicorn settings for iris-service on Linux: ``gunicorn -c gunicorn.conf.py``.

Each value can be overridden from the environment (``GUNICORN_*``), so the image and
the Kubernetes manifests tune the server without editing this file.
"""

import os
import sys
from pathlib import Path

from iris_service.errors import ConfigError
from iris_service.servers.gunicorn_settings import read

# Every GUNICORN_* variable below, checked: a bad one stops here with one line (gunicorn would
# print a traceback, or start with no worker for GUNICORN_WORKERS=0). SystemExit is not an
# Exception, so gunicorn's reader lets it through without adding its own.
try:
    _env = read(os.environ)
except ConfigError as exc:
    print(f"Error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

# The WSGI entry point, so the command line needs no app argument.
wsgi_app = "wsgi:app"

# Loopback by default, so a developer's run is not exposed; the image sets 0.0.0.0:8080.
bind = _env["GUNICORN_BIND"]

# Processes give CPU parallelism for numpy/sklearn code that holds the GIL; two per
# container, and scale out with more pods (the HPA) rather than more workers.
workers = _env["GUNICORN_WORKERS"]

# Threads overlap request I/O and JSON work inside a worker, and keep /health/live
# answering while another thread predicts; gthread also handles keep-alive. Our
# gthread receives each request whole in the worker's event loop before a thread
# serves it, within GUNICORN_REQUEST_TIMEOUT seconds (30; read by the worker): plain
# gthread gives a thread to a client's first byte, so 8 clients trickling their
# headers a byte a second held all 8 threads, for ever.
worker_class = "iris_service.servers.gunicorn_worker.ThreadWorker"
threads = _env["GUNICORN_THREADS"]

# A worker silent this long (seconds) is killed and replaced: far above any single
# prediction, low enough that a hung worker does not hold requests for minutes.
timeout = _env["GUNICORN_TIMEOUT"]

# Time for in-flight requests to finish after SIGTERM; kept below the pod's
# terminationGracePeriodSeconds minus its preStop sleep, so Kubernetes never SIGKILLs
# a draining worker.
graceful_timeout = _env["GUNICORN_GRACEFUL_TIMEOUT"]

# Seconds to hold an idle keep-alive connection: lets a client or sidecar reuse its
# connection for the next prediction without pinning threads to idle clients.
keepalive = _env["GUNICORN_KEEPALIVE"]

# Each worker binds its own listening socket (SO_REUSEPORT) and the kernel spreads new
# connections over them. With one shared socket, whichever worker woke first could
# accept a whole burst of keep-alive clients and keep them: the bench saw every one of
# 64 connections on one worker in a third of its runs, at half the throughput. The cost:
# a second server of the same user on the same port shares it instead of failing to
# bind; GUNICORN_REUSE_PORT=0 goes back to one shared socket.
reuse_port = _env["GUNICORN_REUSE_PORT"]

# The app (and the model) is built once in the master and shared copy-on-write by the
# forked workers: less memory, and a model that fails to load stops the start.
preload_app = True

# The app writes one structured line per request (iris_service.requests), so
# gunicorn's own access log would only duplicate it.
accesslog = None
errorlog = "-"
loglevel = _env["GUNICORN_LOG_LEVEL"]

# Worker heartbeats on tmpfs: a disk-backed /tmp (overlayfs in containers) can stall
# them long enough to get healthy workers killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# No control socket (gunicorn >= 25.1 opens one under $HOME): the container has no
# writable home, and signals or the orchestrator already manage the workers.
# Older gunicorn ignores the unknown setting.
control_socket_disable = True

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_PREPARED_BY = "IRIS_MULTIPROC_DIR_PREPARED_BY"


def _prepare_multiproc_dir() -> None:
    """Create PROMETHEUS_MULTIPROC_DIR and delete a previous run's metric files.

    Runs while this file is read, before the app loads: with preload_app the master
    builds the app (and writes its model-load metrics) in Arbiter.setup(), before
    on_starting fires, so a wipe there would delete live data. A HUP re-reads this
    file in the same master; the marker keeps that from wiping live workers' files.
    """
    path = os.environ.get(_MULTIPROC_ENV)
    if not path or os.environ.get(_PREPARED_BY) == str(os.getpid()):
        return
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[_PREPARED_BY] = str(os.getpid())


_prepare_multiproc_dir()


def on_starting(server):
    """Say where the workers' metrics are aggregated, or that they are not; name the address listened at;
    check GRPC_PORT can be served."""
    from iris_service.cli.grpc_app import check_in_master
    from iris_service.servers.gunicorn_log import name_listeners

    # With reuse_port the master binds nothing, and gunicorn's line would read "Listening at:  (pid)".
    name_listeners(server)
    check_in_master(server)
    path = os.environ.get(_MULTIPROC_ENV)
    if path:
        server.log.info("Prometheus multiprocess metrics in %s", path)
    elif workers > 1:
        server.log.warning(
            "%s is not set: each /metrics scrape shows one worker's counts only", _MULTIPROC_ENV
        )


def child_exit(server, worker):
    """Drop a dead worker's live gauges (in-flight requests) from the aggregate."""
    if os.environ.get(_MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


# gRPC beside HTTP (IRIS_SERVICE_GRPC_PORT, e.g. 8081): grpcio is not fork-safe, so the
# master never starts it; every worker starts its own after the fork, all on that one
# port (SO_REUSEPORT), and drains it beside HTTP on SIGTERM (iris_service/cli/grpc_app.py).
def post_worker_init(worker):
    """Start this worker's gRPC server when GRPC_PORT is set."""
    from iris_service.cli.grpc_app import start_in_worker

    start_in_worker(worker)


def worker_exit(server, worker):
    """Stop the worker's gRPC server if its worker class has not drained it (another class than ours)."""
    from iris_service.cli.grpc_app import stop_in_worker

    stop_in_worker(worker)
