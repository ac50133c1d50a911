"""The MLflow scoring protocol: what ``mlflow models serve`` answers, on the default model.

A team moving off MLflow changes only the URL: ``/invocations``, ``/ping`` and
``/version`` behave as MLflow's scoring server does for a tabular model.
"""
from __future__ import annotations

from typing import Any

import flask
from flask import Response
from flask.views import MethodView

from ...errors import UnsupportedMediaType
from ...protocols import mlflow
from ...version import __version__
from ..blueprint import Blueprint, parse_json_body
from ..errors import PLAIN
from ..schemas.base import PlainErrorSchema
from ..schemas.fields import max_batch_size, max_columns
from ..schemas.mlflow import InvocationsRequestSchema, InvocationsResponseSchema, PingSchema
from ..state import dataplane, infer

CSV_MIMETYPE = "text/csv"


def _load_body(req: flask.Request) -> Any:
    """JSON or CSV bodies; MLflow answers 400 to any body it cannot score.

    A CSV body is read a line at a time within the row limit and the widest
    model's columns, so its lines are bounded before they are split into fields.
    """
    if req.mimetype == CSV_MIMETYPE:
        return mlflow.read_csv(req.get_data(cache=True), max_rows=max_batch_size(), max_columns=max_columns())
    if not req.is_json:
        raise UnsupportedMediaType(
            f"Send the body as application/json or text/csv (got {req.mimetype or 'no content type'})."
        )
    return parse_json_body(req)


blp = Blueprint("mlflow", __name__, description="MLflow scoring protocol (mlflow models serve).",
                error_style=PLAIN, input_error=mlflow.INPUT_ERROR, load_body=_load_body)


@blp.route("/invocations")
class Invocations(MethodView):
    @blp.arguments(InvocationsRequestSchema)
    @blp.response(200, InvocationsResponseSchema)
    @blp.alt_response(400, schema=PlainErrorSchema, description="Malformed body, or a missing or unknown column")
    @blp.alt_response(413, schema=PlainErrorSchema, description="Body larger than MAX_CONTENT_LENGTH")
    @blp.alt_response(415, schema=PlainErrorSchema, description="Body is neither application/json nor text/csv")
    @blp.alt_response(503, schema=PlainErrorSchema, description="Model not loaded")
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Score rows with the default model, as MLflow's /invocations does.

        JSON with `dataframe_split`, `dataframe_records`, `instances` or `inputs`,
        or a `text/csv` body with a header row. Columns are matched by name.
        """
        return infer(None, body, mlflow)  # type: ignore[no-any-return]


@blp.route("/ping")
class Ping(MethodView):
    @blp.response(200, PingSchema)
    @blp.alt_response(503, schema=PlainErrorSchema, description="Model not loaded")
    def get(self) -> dict[str, Any]:
        """MLflow health check: 200 when the default model is loaded."""
        dataplane().model()
        return {"status": "ready"}


@blp.route("/version")
class Version(MethodView):
    @blp.response(200, content_type="text/plain")
    @blp.doc(responses={"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}})
    def get(self) -> Response:
        """The iris-service version, as plain text like MLflow's /version."""
        return Response(__version__, mimetype="text/plain")
