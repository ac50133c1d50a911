"""Health endpoints: the tutorial's ``/health`` plus liveness and readiness probes."""
from __future__ import annotations

from typing import Any

from flask.views import MethodView

from ...errors import ModelNotReady
from ..blueprint import Blueprint
from ..errors import NATIVE
from ..schemas.health import HealthSchema, LiveSchema, ReadySchema
from ..state import dataplane

blp = Blueprint("health", __name__, description="Liveness, readiness and the tutorial's health check.",
                error_style=NATIVE)

#: The tutorial's exact text: existing monitors match on it.
STATUS_TEXT = "API is running!"


@blp.route("/health")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    def get(self) -> dict[str, Any]:
        """Say the API is running and which model it serves."""
        models = dataplane()
        status = models.status()
        default = models.default
        return {
            "status": STATUS_TEXT,
            "model": default,
            "version": status.get(default, {}).get("version"),
            "ready": models.ready(),
            "models": status,
        }


@blp.route("/health/live")
class Live(MethodView):
    @blp.response(200, LiveSchema)
    def get(self) -> dict[str, Any]:
        """Liveness: the process is up and answering."""
        return {"status": "alive"}


@blp.route("/health/ready")
class Ready(MethodView):
    @blp.response(200, ReadySchema)
    @blp.errors((503, "A configured model is not loaded"))
    def get(self) -> dict[str, Any]:
        """Readiness: every configured model is loaded and verified."""
        models = dataplane()
        status = models.status()
        failed = models.unready()
        if failed:
            raise ModelNotReady(
                "Not ready: " + "; ".join(f"{n}: {r}" for n, r in failed.items()),
                errors={"models": failed},
            )
        return {"status": "ready", "models": {n: s["version"] for n, s in status.items()}}
