"""The MLflow scoring protocol: what ``mlflow models serve`` answers, on the default model.

A team moving off MLflow changes only the URL: ``/invocations``, ``/ping`` and
``/version`` behave as MLflow's scoring server does for a tabular model. Bodies
are JSON, CSV or (MLflow 3, with the ``files`` extra) Parquet; errors carry
MLflow's ``error_code`` and ``message`` next to our ``error``, so MLflow's
client reports them as it reports its own server's.
"""
from __future__ import annotations

from typing import Any

import flask
import orjson
from flask import Response, request
from flask.views import MethodView

from ...errors import BadRequest, UnsupportedMediaType
from ...protocols import mlflow, parquet
from ...protocols.mlflow_nan import non_finite_cell
from ...version import __version__
from ..blueprint import Blueprint, parse_json_body
from ..errors import PLAIN
from ..schemas.fields import max_batch_size, max_columns
from ..schemas.mlflow import (
    InvocationsRequestSchema,
    InvocationsResponseSchema,
    MlflowErrorSchema,
    PingSchema,
)
from ..state import dataplane, infer

CSV_MIMETYPE = "text/csv"
#: The paths of this blueprint, for routing errors (405), which reach no blueprint hook.
_PATHS = frozenset({"/invocations", "/ping", "/version"})


def _load_body(req: flask.Request) -> Any:
    """JSON, CSV or Parquet bodies; MLflow answers 400 to any body it cannot score.

    A CSV body is read a line at a time within the row limit and the widest
    model's columns, so its lines are bounded before they are split into fields.
    """
    if req.mimetype == CSV_MIMETYPE:
        return mlflow.read_csv(req.get_data(cache=True), max_rows=max_batch_size(), max_columns=max_columns())
    if req.mimetype == parquet.MEDIA_TYPE:
        return parquet.read_parquet(req.get_data(cache=True), dataplane().limits)
    if not req.is_json:
        raise UnsupportedMediaType(
            f"Send the body as application/json, text/csv or {parquet.MEDIA_TYPE} "
            f"(got {req.mimetype or 'no content type'})."
        )
    try:
        return parse_json_body(req)
    except BadRequest:
        # MLflow's client writes a DataFrame's missing values as NaN literals: say where.
        located = non_finite_cell(req.get_data(cache=True))
        if located is None:
            raise
        raise located from None


blp = Blueprint("mlflow", __name__, description="MLflow scoring protocol (mlflow models serve).",
                error_style=PLAIN, error_schema=MlflowErrorSchema, input_error=mlflow.INPUT_ERROR,
                load_body=_load_body)


@blp.after_app_request
def mlflow_error_fields(response: Response) -> Response:
    """Add MLflow's ``error_code`` and ``message`` to our ``{"error": ...}`` on this blueprint's routes.

    An app-wide hook rather than the blueprint's own: a 405 on ``/invocations``
    has no blueprint. The status is checked first, so a success costs one comparison.
    """
    if response.status_code < 400 or response.mimetype != "application/json":
        return response
    if request.blueprint != blp.name and (request.url_rule is not None or request.path not in _PATHS):
        return response
    # A host app's hooks may run first and compress or stream the answer: leave those alone.
    if response.is_streamed or "Content-Encoding" in response.headers:
        return response
    try:
        body = orjson.loads(response.get_data())
    except orjson.JSONDecodeError:
        return response
    if isinstance(body, dict) and isinstance(body.get("error"), str) and "error_code" not in body:
        body = {**body, "error_code": mlflow.error_code(response.status_code), "message": body["error"]}
        response.set_data(orjson.dumps(body))
    return response


@blp.route("/invocations")
class Invocations(MethodView):
    @blp.arguments(InvocationsRequestSchema)
    @blp.response(200, InvocationsResponseSchema)
    @blp.errors(
        (400, "Malformed body, or a missing or unknown column"),
        413,
        (415, "Body is not JSON, CSV or Parquet, or Parquet without the files extra"),
        503,
    )
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Score rows with the default model, as MLflow's /invocations does.

        JSON with `dataframe_split`, `dataframe_records`, `instances` or `inputs`,
        a `text/csv` body with a header row, or an `application/vnd.apache.parquet`
        body (`DataFrame.to_parquet()`, with the `files` extra). Columns are matched by name.
        """
        return infer(None, body, mlflow)  # type: ignore[no-any-return]


@blp.route("/ping")
class Ping(MethodView):
    @blp.response(200, PingSchema)
    @blp.errors(503)
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
