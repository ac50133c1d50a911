"""The standard ``grpc.health.v1`` service, answered from the data plane: overall ("") and per model.

Kubernetes' ``grpc:`` probes call Check. The statuses are read from the data
plane on every Check (and Watch), so a model loaded or unloaded through REST,
the admin routes or the repository RPCs shows at once, with no hook between
the transports. ``""`` and the inference service's own name are SERVING when
every configured model is loaded; each model's name when that one is.
"""
from __future__ import annotations

from typing import Any

from grpc_health.v1 import health, health_pb2

from ..serving import DataPlane
from .auth import SERVICE

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ModelHealth(health.HealthServicer):
    """grpcio's health servicer with its statuses refreshed from ``plane`` before each answer."""

    def __init__(self, plane: DataPlane) -> None:
        super().__init__()
        self.plane = plane
        self.refresh()

    def refresh(self) -> None:
        """Set "", the service's name and every model's name from what the data plane serves.

        After ``enter_graceful_shutdown`` grpcio ignores ``set``: everything stays NOT_SERVING.
        """
        status = self.plane.status()
        overall = SERVING if status and all(s["state"] == "READY" for s in status.values()) else NOT_SERVING
        self.set("", overall)
        self.set(SERVICE, overall)
        for name, state in status.items():
            self.set(name, SERVING if state["state"] == "READY" else NOT_SERVING)

    def Check(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method's name
        self.refresh()
        return super().Check(request, context)

    def Watch(self, request: Any, context: Any, send_response_callback: Any = None) -> Any:  # noqa: N802
        self.refresh()
        return super().Watch(request, context, send_response_callback)

