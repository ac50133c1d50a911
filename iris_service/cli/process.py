"""What a server process does once, around the app: the effects ``create_app`` must not have.

``iris-service serve``, ``wsgi.py`` (gunicorn, ``waitress-serve``) and
``gunicorn.conf.py`` call ``prepare``; a host app that mounts our blueprints
never does, so its collector, loggers and exit hooks stay its own.
"""
from __future__ import annotations

import atexit
import gc
import logging
from collections.abc import Sequence
from typing import Any

from ..rest.state import EXTENSION_KEY
from .log_writer import configure_request_log


def prepare(app: Any) -> None:
    """Request log to stderr at the app's level, warnings shown, heap settled; exit hooks for batchers and payload log."""
    # As waitress.serve does: its warnings (queue depth, socket errors) and our
    # errors' tracebacks reach stderr; the request log has its own handler.
    logging.basicConfig()
    logging.getLogger("iris_service.servers.waitress_server").setLevel(logging.INFO)
    configure_request_log(app.config.get("LOG_LEVEL", "INFO"))
    state = app.extensions.get(EXTENSION_KEY)
    if state is not None and state.dataplane is not None:
        atexit.register(state.dataplane.close)
    if state is not None and state.payload_log is not None:
        # After SIGTERM's drain the server returns and the process exits: the queued records go first.
        atexit.register(state.payload_log.close)
    settle_heap(app.config.get("GC_THRESHOLD"))


def settle_heap(threshold: Sequence[int] | None) -> None:
    """Freeze what start-up loaded out of the collector, then apply ``GC_THRESHOLD``.

    What is loaded now lives as long as the process: frozen, a 10,000-row
    request's lists no longer trigger full collections that rescan scikit-learn's
    objects (3x faster batches), and forked gunicorn workers keep sharing these
    pages. A request makes garbage that reference counting frees, not cycles, yet
    Python's default first threshold (700 allocations) still runs a collection
    every few dozen rows of a batch: about 12% of a 10,000-row request. A
    threshold of 50,000 keeps that under 2%, for at most a few megabytes of
    cyclic garbage waiting a little longer. ``None`` keeps Python's thresholds.
    """
    gc.collect()
    gc.freeze()
    if threshold:
        gc.set_threshold(*threshold)
