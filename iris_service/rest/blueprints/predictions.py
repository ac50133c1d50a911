"""``POST /predict``: the tutorial's endpoint, kept compatible and validated."""
from __future__ import annotations

from typing import Any

from flask.views import MethodView

from ...protocols import native
from ..blueprint import Blueprint
from ..errors import NATIVE
from ..schemas.predictions import PredictRequestSchema, PredictResponseSchema
from ..state import infer

#: One instance each, shared by the view and the row lane (``rest/lane``): they hold no request state.
REQUEST_SCHEMA = PredictRequestSchema()
RESPONSE_SCHEMA = PredictResponseSchema()

blp = Blueprint(
    "predictions",
    __name__,
    description="Predict with the default model (the tutorial's endpoint, extended).",
    error_style=NATIVE,
    input_error=native.INPUT_ERROR,
)


@blp.route("/predict")
class Predict(MethodView):
    @blp.arguments(REQUEST_SCHEMA)
    @blp.response(200, RESPONSE_SCHEMA)
    @blp.errors((400, "Malformed JSON"), 413, 415, 503)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Predict the class of one row or a batch with the default model.

        Send `{"features": [sepal_length, sepal_width, petal_length, petal_width]}`
        (or an object keyed by feature name) for one row, or `{"instances": [...]}`
        for a batch.
        """
        return infer(None, body, native)  # type: ignore[no-any-return]
