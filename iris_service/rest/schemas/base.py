"""Schema bases shared by every blueprint."""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields


class ResponseSchema(Schema):
    """A response schema that documents the answer but does not re-serialise it.

    Codecs already build plain JSON-ready dicts; dumping them again through
    marshmallow would cost more than the prediction itself on large batches.
    The OpenAPI document still gets the full schema (tests check answers
    against it with schemathesis).
    """

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        return obj


class ErrorSchema(Schema):
    """flask-smorest's error shape, returned by every native route."""

    code = fields.Integer(required=True, metadata={"description": "HTTP status code"})
    status = fields.String(required=True, metadata={"description": "HTTP status name"})
    message = fields.String(metadata={"description": "What went wrong"})
    errors = fields.Dict(metadata={"description": "Field-level messages, keyed by location and field"})
    request_id = fields.String(metadata={"description": "Request id, on server errors"})


class PlainErrorSchema(Schema):
    """The ``{"error": ...}`` shape of the V1, V2 and MLflow protocols."""

    error = fields.String(required=True)
    request_id = fields.String(metadata={"description": "Request id, on server errors"})
