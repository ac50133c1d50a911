"""Servers a gunicorn worker runs beside HTTP (gRPC), stopped and drained with it.

A worker process may serve another protocol on a port of its own; it must
start after the fork (grpcio is not fork-safe) and stop with the worker. This
layer knows nothing of gRPC: a companion is anything with ``stop(grace) ->
threading.Event`` (set once stopped), as ``grpc.server`` has. SIGTERM starts
every companion's drain at once, beside HTTP's, with gunicorn's
``graceful_timeout``; the worker exits once both are done or that time is up.
SIGQUIT and SIGINT (gunicorn's fast stop) stop them with no grace.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Protocol


class Companion(Protocol):
    def stop(self, grace: float | None) -> threading.Event: ...


class CompanionsMixin:
    """For a gunicorn worker class: ``add_companion(server)`` once it is started (``post_worker_init``)."""

    cfg: Any

    def add_companion(self, companion: Companion) -> None:
        self.__dict__.setdefault("_companions", []).append(companion)

    def stop_companions(self, grace: float | None) -> None:
        """Start stopping every companion not stopping yet (it refuses new calls, drains for ``grace`` s).

        Called from the SIGTERM handler: the worker's main thread runs only the
        HTTP event loop and never holds a companion's locks, so this cannot block it for long.
        """
        stopping: dict[int, threading.Event] = self.__dict__.setdefault("_stopping", {})
        for companion in self.__dict__.get("_companions", ()):
            if id(companion) not in stopping:
                stopping[id(companion)] = companion.stop(grace)

    def wait_companions(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds in all for the companions to stop; True if they all did."""
        deadline = time.monotonic() + timeout
        events = self.__dict__.get("_stopping", {}).values()
        return all(event.wait(max(0.0, deadline - time.monotonic())) for event in list(events))

    def handle_exit(self, sig: Any, frame: Any) -> None:
        super().handle_exit(sig, frame)  # type: ignore[misc]
        self.stop_companions(self.cfg.graceful_timeout)

    def handle_quit(self, sig: Any, frame: Any) -> None:
        self.stop_companions(0)
        super().handle_quit(sig, frame)  # type: ignore[misc]

    def run(self) -> None:
        """gunicorn's loop; then the companions' drain (begun at SIGTERM) gets what is left of the grace."""
        try:
            super().run()  # type: ignore[misc]
        finally:
            # A stop without SIGTERM (max_requests, the master gone) drains them too.
            self.stop_companions(self.cfg.graceful_timeout)
            self.wait_companions(self.cfg.graceful_timeout + 1.0)
