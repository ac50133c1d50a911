"""The model registry over HTTP: list, describe, predict with a named model."""
from __future__ import annotations

from typing import Any

from flask.views import MethodView

from ..codecs import native
from ..errors import register_blueprint_error_handlers
from ..extensions import registry
from ..inference import run
from ..parsing import Blueprint
from ..schemas.base import ErrorSchema
from ..schemas.models import ModelDetailSchema, ModelListSchema
from ..schemas.predictions import PredictRequestSchema, PredictResponseSchema

blp = Blueprint("models", __name__, description="Named, versioned models.")
register_blueprint_error_handlers(blp)


@blp.route("/models")
class Models(MethodView):
    @blp.response(200, ModelListSchema)
    def get(self) -> dict[str, Any]:
        """List the configured models and the version each serves."""
        models = registry()
        listing = [
            {
                "name": name,
                "state": status["state"],
                "version": status["version"],
                "versions": models.source(name).versions() or ([status["version"]] if status["version"] else []),
                "default": name == models.default,
            }
            for name, status in models.status().items()
        ]
        return {"models": listing, "default": models.default}


@blp.route("/models/<name>")
class ModelDetail(MethodView):
    @blp.response(200, ModelDetailSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such model")
    @blp.alt_response(503, schema=ErrorSchema, description="Model not loaded")
    def get(self, name: str) -> dict[str, Any]:
        """Describe a model: its manifest's public part, inputs and classes."""
        models = registry()
        model = models.get(name)
        detail = model.manifest.public()
        detail["available_versions"] = models.source(name).versions() or [model.version]
        return detail


@blp.route("/models/<name>/predict")
class ModelPredict(MethodView):
    @blp.arguments(PredictRequestSchema)
    @blp.response(200, PredictResponseSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="Malformed JSON")
    @blp.alt_response(404, schema=ErrorSchema, description="No such model")
    @blp.alt_response(413, schema=ErrorSchema, description="Body larger than MAX_CONTENT_LENGTH")
    @blp.alt_response(415, schema=ErrorSchema, description="Body is not application/json")
    @blp.alt_response(503, schema=ErrorSchema, description="Model not loaded")
    def post(self, body: dict[str, Any], name: str) -> dict[str, Any]:
        """Predict with the named model (same request and answer as /predict)."""
        return run(name, body, codec=native)
