"""The V1 protocol: KServe V1 and TensorFlow Serving's REST predict API.

Clients written for either call ``POST /v1/models/<name>:predict`` unchanged;
errors answer ``{"error": "..."}`` as both specify. ``:explain`` (KServe's
explainer verb) answers per-feature contributions (``blueprints/explain.py``).
"""
from __future__ import annotations

from typing import Any

from flask.views import MethodView

from ...protocols import v1
from ..blueprint import Blueprint
from ..errors import PLAIN
from ..schemas.explain import V1ExplainResponseSchema
from ..schemas.v1 import V1ModelSchema, V1PredictRequestSchema, V1PredictResponseSchema
from ..state import dataplane, infer
from .explain import NOT_EXPLAINABLE, explain

# Invalid bodies are 400, as TensorFlow Serving and KServe answer.
blp = Blueprint("v1", __name__, url_prefix="/v1", description="KServe V1 / TensorFlow Serving REST protocol.",
                error_style=PLAIN, input_error=v1.INPUT_ERROR)


@blp.route("/models/<name>:predict")
class Predict(MethodView):
    @blp.arguments(V1PredictRequestSchema)
    @blp.response(200, V1PredictResponseSchema)
    @blp.errors(400, 404, 413, 415, 503)
    def post(self, body: dict[str, Any], name: str) -> dict[str, Any]:
        """Predict with the V1 protocol (KServe V1, TensorFlow Serving).

        `{"instances": [[...], ...]}` answers `{"predictions": [...]}`; the columnar
        `{"inputs": {"feature": [...], ...}}` answers `{"outputs": [...]}`.
        """
        return infer(name, body, v1)  # type: ignore[no-any-return]


@blp.route("/models/<name>:explain")
class Explain(MethodView):
    @blp.arguments(V1PredictRequestSchema)
    @blp.response(200, V1ExplainResponseSchema)
    @blp.errors(400, 404, 413, 415, NOT_EXPLAINABLE, 503)
    def post(self, body: dict[str, Any], name: str) -> dict[str, Any]:
        """KServe V1 explain: each feature's contribution to each class's score, for every row.

        The body is `:predict`'s (`instances` or `inputs`); the answer is
        `/models/<name>/explain`'s for a batch, without the model's name.
        """
        return explain(name, body, v1, named=False)  # type: ignore[no-any-return]


@blp.route("/models/<name>")
class ModelStatus(MethodView):
    @blp.response(200, V1ModelSchema)
    @blp.errors(404, 503)
    def get(self, name: str) -> dict[str, Any]:
        """Say whether a model is ready (KServe V1 model status)."""
        model = dataplane().model(name)
        return {"name": model.name, "ready": True}
