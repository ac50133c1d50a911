"""The V1 protocol: KServe V1 and TensorFlow Serving's REST predict API.

Clients written for either call ``POST /v1/models/<name>:predict`` unchanged;
errors answer ``{"error": "..."}`` as both specify. ``:explain`` (KServe's
explainer verb) has its own route so that it answers a clear 501 rather than
a 405 from ``/models/<name>`` reading ``iris:explain`` as a model name.
"""
from __future__ import annotations

from typing import Any, NoReturn

from flask.views import MethodView

from ...errors import IrisServiceError
from ...protocols import v1
from ..blueprint import Blueprint
from ..errors import PLAIN
from ..schemas.v1 import V1ModelSchema, V1PredictRequestSchema, V1PredictResponseSchema
from ..state import dataplane, infer

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


class ExplanationsUnavailable(IrisServiceError):
    """The model is served but this server computes no explanations (501, gRPC's UNIMPLEMENTED)."""

    status = 501
    message = "Explanations are not available."


@blp.route("/models/<name>:explain")
class Explain(MethodView):
    # No 200 is documented: none is ever answered, until explanations are built.
    @blp.errors(404, (501, "This server computes no explanations yet"), 503)
    def post(self, name: str) -> NoReturn:
        """KServe V1 explain: not implemented yet (501) for a served model, 404 for an unknown one.

        The body is not read: whatever it holds, no explanation can be computed.
        """
        model = dataplane().model(name)
        raise ExplanationsUnavailable(
            f"Explanations are not available for model {model.name!r}: this server does not compute them "
            f"yet. Use POST /v1/models/{model.name}:predict for predictions."
        )


@blp.route("/models/<name>")
class ModelStatus(MethodView):
    @blp.response(200, V1ModelSchema)
    @blp.errors(404, 503)
    def get(self, name: str) -> dict[str, Any]:
        """Say whether a model is ready (KServe V1 model status)."""
        model = dataplane().model(name)
        return {"name": model.name, "ready": True}
