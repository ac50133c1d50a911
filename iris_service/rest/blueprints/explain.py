"""``POST /models/<name>/explain``: each feature's contribution to each class's score, for every row.

The body is ``/models/<name>/predict``'s and goes through the same checks (the
data plane's ``explain`` path); a model that cannot be explained answers 501
saying which estimators can. ``explain`` below is shared with V1's ``:explain``.
"""
from __future__ import annotations

from typing import Any

from flask import g
from flask.views import MethodView

from ...protocols import native
from ..blueprint import Blueprint
from ..errors import NATIVE
from ..schemas.explain import ExplainResponseSchema
from ..schemas.predictions import PredictRequestSchema
from ..state import MODEL, dataplane

blp = Blueprint("explanations", __name__, description="Per-feature contributions to a model's scores.",
                error_style=NATIVE, input_error=native.INPUT_ERROR)

#: The 501 every explain route documents.
NOT_EXPLAINABLE = (501, "The model's estimator, format or stored data cannot be explained")


def explain(name: str, body: Any, protocol: Any, *, named: bool = True) -> Any:
    """Explain one request through the data plane; the model is noted for the request log first.

    Explanations are not predictions: the metrics' prediction counters do not count them.
    """
    plane = dataplane()
    model = plane.model(name)
    setattr(g._get_current_object(), MODEL, model)
    return plane.explain(model, body, protocol, named=named).answer


@blp.route("/models/<name>/explain")
class ModelExplain(MethodView):
    @blp.arguments(PredictRequestSchema)
    @blp.response(200, ExplainResponseSchema)
    @blp.errors((400, "Malformed JSON"), 404, 413, 415, NOT_EXPLAINABLE, 503)
    def post(self, body: dict[str, Any], name: str) -> dict[str, Any]:
        """Explain the named model's prediction for one row or a batch (the body of /models/<name>/predict).

        Each row's answer holds the predicted class, the explained `scores` and,
        per class, each feature's contribution; `baseline` + the contributions
        of a class = its score. Linear models are explained exactly in their
        decision function's space; tree ensembles by TreeSHAP.
        """
        return explain(name, body, native)  # type: ignore[no-any-return]
