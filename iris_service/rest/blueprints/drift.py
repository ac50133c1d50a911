"""``GET /models/<name>/drift``: served values against the model's training distribution."""
from __future__ import annotations

from typing import Any

from flask.views import MethodView

from ...protocols import native
from ...serving.drift import DriftSnapshot
from ..blueprint import Blueprint
from ..errors import NATIVE
from ..schemas.drift import DriftSchema
from ..state import dataplane

blp = Blueprint("drift", __name__, description="Drift of served values from the training data.",
                error_style=NATIVE, input_error=native.INPUT_ERROR)


@blp.route("/models/<name>/drift")
class ModelDrift(MethodView):
    @blp.response(200, DriftSchema)
    @blp.errors(404, 503)
    def get(self, name: str) -> dict[str, Any]:
        """PSI and out-of-range share per feature over the last DRIFT_WINDOW served rows."""
        plane = dataplane()
        model = plane.model(name)
        answer: dict[str, Any] = {"model": model.name, "version": str(model.version)}
        reason = plane.drift.why_untracked(model)
        tracker = plane.drift.tracker(model)
        if reason is not None or tracker is None:
            return {**answer, "tracked": False, "reason": reason, "features": {}}
        return {**answer, "tracked": True, "reason": None, **describe(tracker.snapshot())}


def describe(snapshot: DriftSnapshot) -> dict[str, Any]:
    """The snapshot as the JSON answer's window, rows and features."""
    return {
        "window": snapshot.window,
        "rows": snapshot.rows,
        "observed": snapshot.count,
        "features": {
            f.name: {"psi": f.psi, "out_of_range_share": f.out_of_range_share, "out_of_range_total": f.out_of_range}
            for f in snapshot.features
        },
    }
