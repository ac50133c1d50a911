"""The V1 protocol: KServe V1 and TensorFlow Serving's REST predict API.

Clients written for either call ``POST /v1/models/<name>:predict`` unchanged;
errors answer ``{"error": "..."}`` as both specify.
"""
from __future__ import annotations

from typing import Any

from flask.views import MethodView

from ..codecs import v1
from ..errors import register_blueprint_error_handlers
from ..extensions import registry
from ..inference import run
from ..parsing import Blueprint, JSONParser
from ..schemas.base import PlainErrorSchema
from ..schemas.v1 import V1ModelSchema, V1PredictRequestSchema, V1PredictResponseSchema


class _Parser(JSONParser):
    """Strict JSON, with 400 for invalid bodies as TensorFlow Serving and KServe answer."""

    DEFAULT_VALIDATION_STATUS = 400


class _Blueprint(Blueprint):
    ARGUMENTS_PARSER = _Parser()


blp = _Blueprint("v1", __name__, url_prefix="/v1", description="KServe V1 / TensorFlow Serving REST protocol.")
register_blueprint_error_handlers(blp)


@blp.route("/models/<name>:predict")
class Predict(MethodView):
    @blp.arguments(V1PredictRequestSchema)
    @blp.response(200, V1PredictResponseSchema)
    @blp.alt_response(400, schema=PlainErrorSchema, description="Malformed or invalid body")
    @blp.alt_response(404, schema=PlainErrorSchema, description="No such model")
    @blp.alt_response(413, schema=PlainErrorSchema, description="Body larger than MAX_CONTENT_LENGTH")
    @blp.alt_response(415, schema=PlainErrorSchema, description="Body is not application/json")
    @blp.alt_response(503, schema=PlainErrorSchema, description="Model not loaded")
    def post(self, body: dict[str, Any], name: str) -> dict[str, Any]:
        """Predict with the V1 protocol (KServe V1, TensorFlow Serving).

        `{"instances": [[...], ...]}` answers `{"predictions": [...]}`; the columnar
        `{"inputs": {"feature": [...], ...}}` answers `{"outputs": [...]}`.
        """
        return run(name, body, codec=v1)


@blp.route("/models/<name>")
class ModelStatus(MethodView):
    @blp.response(200, V1ModelSchema)
    @blp.alt_response(404, schema=PlainErrorSchema, description="No such model")
    @blp.alt_response(503, schema=PlainErrorSchema, description="Model not loaded")
    def get(self, name: str) -> dict[str, Any]:
        """Say whether a model is ready (KServe V1 model status)."""
        model = registry().get(name)
        return {"name": model.name, "ready": True}
