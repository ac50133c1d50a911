"""The model registry over HTTP: list, describe, predict with a named model."""
from __future__ import annotations

from typing import Any

from flask.views import MethodView

from ...protocols import native
from ..blueprint import Blueprint
from ..errors import NATIVE
from ..schemas.models import ModelDetailSchema, ModelListSchema
from ..schemas.predictions import PredictRequestSchema, PredictResponseSchema
from ..state import dataplane, infer

blp = Blueprint("models", __name__, description="Named, versioned models.", error_style=NATIVE,
                input_error=native.INPUT_ERROR)


@blp.route("/models")
class Models(MethodView):
    @blp.response(200, ModelListSchema)
    def get(self) -> dict[str, Any]:
        """List the configured models and the version each serves."""
        models = dataplane()
        listing = [
            {
                "name": name,
                "state": status["state"],
                "version": status["version"],
                "versions": models.versions(name),
                "default": name == models.default,
            }
            for name, status in models.status().items()
        ]
        return {"models": listing, "default": models.default}


@blp.route("/models/<name>")
class ModelDetail(MethodView):
    @blp.response(200, ModelDetailSchema)
    @blp.errors(404, 503)
    def get(self, name: str) -> dict[str, Any]:
        """Describe a model: its manifest's public part, inputs and classes."""
        models = dataplane()
        model = models.model(name)
        detail = model.manifest.public()
        detail["available_versions"] = models.versions(name)
        return detail


@blp.route("/models/<name>/predict")
class ModelPredict(MethodView):
    @blp.arguments(PredictRequestSchema)
    @blp.response(200, PredictResponseSchema)
    @blp.errors((400, "Malformed JSON"), 404, 413, 415, 503)
    def post(self, body: dict[str, Any], name: str) -> dict[str, Any]:
        """Predict with the named model (same request and answer as /predict)."""
        return infer(name, body, native)  # type: ignore[no-any-return]
