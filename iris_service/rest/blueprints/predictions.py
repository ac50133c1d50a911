"""``POST /predict``: the tutorial's endpoint, kept compatible and validated."""
from __future__ import annotations

from typing import Any

from flask.views import MethodView

from ...protocols import native
from ..blueprint import Blueprint
from ..errors import NATIVE
from ..schemas.base import ErrorSchema
from ..schemas.predictions import PredictRequestSchema, PredictResponseSchema
from ..state import infer

blp = Blueprint(
    "predictions",
    __name__,
    description="Predict with the default model (the tutorial's endpoint, extended).",
    error_style=NATIVE,
    input_error=native.INPUT_ERROR,
)


@blp.route("/predict")
class Predict(MethodView):
    @blp.arguments(PredictRequestSchema)
    @blp.response(200, PredictResponseSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="Malformed JSON")
    @blp.alt_response(413, schema=ErrorSchema, description="Body larger than MAX_CONTENT_LENGTH")
    @blp.alt_response(415, schema=ErrorSchema, description="Body is not application/json")
    @blp.alt_response(503, schema=ErrorSchema, description="Model not loaded")
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Predict the class of one row or a batch with the default model.

        Send `{"features": [sepal_length, sepal_width, petal_length, petal_width]}`
        (or an object keyed by feature name) for one row, or `{"instances": [...]}`
        for a batch.
        """
        return infer(None, body, native)  # type: ignore[no-any-return]
