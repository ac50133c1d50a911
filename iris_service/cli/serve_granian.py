"""``iris-service serve --server granian``: the app built once, checked, then served by granian's workers.

The app is built in the main process before any worker starts, so a model that
fails to load or verify stops the start with one line. Where workers are forked
(Linux) they inherit that app, loaded and verified once, its pages shared; where
they are spawned (macOS, Windows) each builds its own from the same settings.
"""
from __future__ import annotations

import atexit
import functools
import multiprocessing
import os
import shutil
import sys
import tempfile
from typing import Any

import click

from ..servers import granian_server, wsgi_layers

#: The app this process built, handed to forked workers (a spawned worker builds its own).
_PRELOADED: dict[str, Any] = {}
#: Blocking threads granian gets when --threads is not given, with BATCHING off. Measured beside
#: each other (single-row /predict, 16 connections, one process): 2 threads answered 1.5x the
#: requests of 4 at 0.4x the p99 (11,600 against 7,400 req/s; 5 against 13 ms), 3 in between, 8
#: fewer still: a row costs ~40 us of Python (the row lane), and more threads only queue on the GIL.
#: Not 1: one large batch, or one client holding back its body, would stall the worker whole.
THREADS_GRANIAN = 2
#: With BATCHING on or auto: the micro-batcher gathers the requests in flight in one process,
#: one per thread, so it needs threads to gather from (S5's 200-tree forest: 4 measured).
THREADS_GRANIAN_BATCHING = 4
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def check_installed() -> None:
    """Stop before loading any model when granian is missing, saying what to install."""
    if granian_server.missing():
        raise click.ClickException(f"--server granian needs granian: {granian_server.INSTALL_HINT}")


def pick_threads(threads: int | None, mode: str, server: str) -> int:
    """Threads for ``BATCHING`` ``mode``: the measured default, or ``threads`` if it can work.

    Micro-batching gathers requests that are in flight in one process at once;
    with one thread there is never more than one, and every request would wait
    out the batcher's latency alone.
    """
    if threads is None:
        if server == "waitress":
            return 8
        return THREADS_GRANIAN if mode == "off" else THREADS_GRANIAN_BATCHING
    if threads == 1 and mode != "off":
        raise click.UsageError(f"BATCHING={mode} gathers requests in flight in one process, and --threads 1 "
                               f"lets one in at a time: set --threads {THREADS_GRANIAN_BATCHING} (or more) or "
                               "IRIS_SERVICE_BATCHING=off.")
    return threads


def prepare_metrics_dir(workers: int) -> str | None:
    """Empty ``PROMETHEUS_MULTIPROC_DIR``, or make a private one when several workers need it.

    Must run before prometheus-client is imported: it picks its storage then.
    A folder made here is removed when the main process exits.
    """
    path = os.environ.get(_MULTIPROC_ENV)
    if not path and workers > 1:
        if "prometheus_client" in sys.modules:  # pragma: no cover - only when embedded in a host
            click.echo(f"{_MULTIPROC_ENV} is not set: each /metrics scrape shows one worker's counts", err=True)
            return None
        path = tempfile.mkdtemp(prefix="iris-metrics-")
        os.environ[_MULTIPROC_ENV] = path
        main_pid = os.getpid()
        atexit.register(lambda: os.getpid() == main_pid and shutil.rmtree(path, ignore_errors=True))
    if path:
        from ..rest.middleware.metrics_multiproc import prepare

        prepare(path)
    return path or None


def worker_app(env: str | None, layers: dict[str, Any]) -> Any:
    """In a granian worker: the app inside our WSGI layers (module level, so spawned workers can pickle it)."""
    from ..rest.state import EXTENSION_KEY
    from . import log_writer, process

    app = _PRELOADED.get("app")
    if app is None:
        from ..rest.factory import create_app

        app = create_app(env)
        process.prepare(app)
    path = os.environ.get(_MULTIPROC_ENV)
    if path:
        from ..rest.middleware.metrics_multiproc import drop_dead

        drop_dead(path)  # the worker this one replaces, if it died
    # A worker process ends through multiprocessing, which runs its finalizers, not atexit.
    state = app.extensions.get(EXTENSION_KEY)
    if state is not None and state.dataplane is not None:
        multiprocessing.util.Finalize(None, state.dataplane.close, exitpriority=20)
    if state is not None and state.payload_log is not None:  # after the drain: the records still queued
        multiprocessing.util.Finalize(None, state.payload_log.close, exitpriority=15)
    multiprocessing.util.Finalize(None, log_writer.flush, exitpriority=10)
    return wsgi_layers.wrap(app, **layers)


def serve(app: Any, env: str | None, settings: granian_server.GranianSettings, layers: dict[str, Any],
          url_prefix: str) -> None:
    """Serve ``app`` (already built and prepared in this process) with granian until SIGTERM."""
    _PRELOADED["app"] = app
    layers = {**layers, "url_prefix": url_prefix, "body_limit": app.config.get("MAX_CONTENT_LENGTH")}
    try:
        server = granian_server.create(functools.partial(worker_app, env, layers), settings)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(
            f"Cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    prefix = "/" + url_prefix.strip("/") if url_prefix.strip("/") else ""
    click.echo(f"iris-service serving on http://{shown}:{settings.port}{prefix} (granian, {settings.workers} "
               f"worker(s) x {settings.threads} thread(s))", err=True)
    server.serve()
