"""Schema bases shared by every blueprint."""
from __future__ import annotations

from itertools import islice
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load

from ...protocols.bounds import CLIPPED, SHOWN, clip


class RequestSchema(Schema):
    """A request body's schema whose unknown keys are counted before marshmallow names each one.

    marshmallow answers each unknown key with an ``Unknown field.`` entry under
    that key: a body of a million keys, or one key of a million characters,
    would be answered with a message as large as the request, built key by
    key. A few short unknown keys keep marshmallow's answer; more, or longer
    ones, get one line naming the first few and the count, found with one set
    difference and a scan that stops at the few named.
    """

    @pre_load
    def _count_unknown_keys(self, data: Any, **kwargs: Any) -> Any:
        if type(data) is not dict or self.unknown != RAISE:
            return data
        known = self._known_keys()
        if data.keys() <= known:
            return data
        unknown = data.keys() - known
        if len(unknown) <= SHOWN and all(len(key) <= CLIPPED for key in unknown):
            return data
        first = [clip(key) for key in islice((k for k in data if k not in known), SHOWN)]
        more = f" and {len(unknown) - len(first)} more" if len(unknown) > len(first) else ""
        raise ValidationError(f"Unknown field(s): {', '.join(first)}{more}.")

    def _known_keys(self) -> frozenset[str]:
        keys = self.__dict__.get("_known")
        if keys is None:
            keys = self.__dict__["_known"] = frozenset(f.data_key or name for name, f in self.load_fields.items())
        return keys  # type: ignore[no-any-return]


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
