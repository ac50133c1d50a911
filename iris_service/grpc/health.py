"""The standard ``grpc.health.v1`` service, answered from the data plane: overall ("") and per model.

Kubernetes' ``grpc:`` probes call Check. The statuses are read from the data
plane on every Check, so a model loaded or unloaded through REST, the admin
routes or the repository RPCs shows at once, with no hook between the
transports. ``""`` and the inference service's own name are SERVING when every
configured model is loaded; each model's name when that one is.

Our own servicer rather than grpcio's ``HealthServicer``: that one sends to its
watchers while holding the lock that a closing watcher's callback takes on
grpcio's polling thread, and a send waits for that thread. Setting a status
while a watcher hangs up froze the whole gRPC server. Here nothing is sent
under the lock. On shutdown every watcher gets NOT_SERVING and its stream ends,
so the drain does not wait for streams that never end by themselves.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..serving import DataPlane
from .auth import SERVICE

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
Send = Callable[[Any], None]


class ModelHealth(health_pb2_grpc.HealthServicer):
    """Check and Watch on the data plane's statuses; Watch holds no thread (grpcio's non-blocking streams)."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self._lock = threading.Lock()
        # One entry per open Watch: [service, send, status last sent].
        self._watchers: dict[object, list[Any]] = {}
        self._stopping = False

    def statuses(self) -> dict[str, int]:
        """"", the service's name and every model's name -> SERVING or NOT_SERVING (all NOT_SERVING when stopping)."""
        status = self.plane.status()
        ready = {name: s["state"] == "READY" for name, s in status.items()}
        overall = bool(ready) and all(ready.values())
        answer = {"": overall, SERVICE: overall, **ready}
        return {name: NOT_SERVING if self._stopping or not ok else SERVING for name, ok in answer.items()}

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 - the gRPC method's name
        statuses = self.statuses()
        self._notify(statuses)
        status = statuses.get(request.service)
        if status is None:
            context.set_code(grpc.StatusCode.NOT_FOUND)
            context.set_details(f"No service or model named {request.service[:200]!r}.")
            return health_pb2.HealthCheckResponse()
        return health_pb2.HealthCheckResponse(status=status)

    def Watch(self, request: Any, context: grpc.ServicerContext, send_response_callback: Send | None = None) -> Any:  # noqa: N802
        status = self.statuses().get(request.service, SERVICE_UNKNOWN)
        if send_response_callback is None:  # a server without non-blocking streams: the status once
            return iter((health_pb2.HealthCheckResponse(status=status),))
        token = object()
        with self._lock:
            self._watchers[token] = [request.service, send_response_callback, status]
        context.add_callback(lambda: self._forget(token))
        send_response_callback(health_pb2.HealthCheckResponse(status=status))
        return None

    # grpcio calls Watch with a send callback and no thread of its own.
    Watch.experimental_non_blocking = True  # type: ignore[attr-defined]

    def refresh(self) -> None:
        """Send each watcher its status if it changed (after a load or unload through gRPC)."""
        self._notify(self.statuses())

    def enter_graceful_shutdown(self) -> None:
        """Everything NOT_SERVING from now on; watchers are told so and their streams end."""
        with self._lock:
            self._stopping = True
        self.refresh()
        with self._lock:
            sends = [send for _service, send, _status in self._watchers.values()]
        for send in sends:
            send(None)  # ends the stream with OK

    def _notify(self, statuses: dict[str, int]) -> None:
        changed = []
        with self._lock:
            for watcher in self._watchers.values():
                status = statuses.get(watcher[0], SERVICE_UNKNOWN)
                if status != watcher[2]:
                    watcher[2] = status
                    changed.append((watcher[1], status))
        # Outside the lock: a send waits for grpcio's polling thread, which takes the lock in _forget.
        for send, status in changed:
            send(health_pb2.HealthCheckResponse(status=status))

    def _forget(self, token: object) -> None:
        with self._lock:
            self._watchers.pop(token, None)

