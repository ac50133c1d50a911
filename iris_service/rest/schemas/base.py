"""Schema bases shared by every blueprint."""
from __future__ import annotations

from itertools import islice
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields

from ...protocols.bounds import CLIPPED, SHOWN, clip


class RequestSchema(Schema):
    """A request body's schema: its bounds checked on the raw body first, its refusals freed at once.

    ``bound`` sees the body before any field reads it; subclasses add their
    protocol's bounds. Here it counts unknown keys: marshmallow answers each with
    an ``Unknown field.`` entry under that key, so a body of a million keys, or
    one key of a million characters, would get a message as large as the request,
    built key by key. A few short unknown keys keep marshmallow's answer; more,
    or longer ones, get one line naming the first few and the count, found with
    one set difference and a scan that stops at the few named.
    """

    def load(self, data: Any, *, many: bool | None = None, partial: Any = None, unknown: str | None = None) -> Any:
        """marshmallow's ``load``, after ``bound``, and whose refusal no longer keeps the refused body alive.

        ``bound`` runs here rather than as a ``pre_load`` hook (a hook's dispatch
        costs about a microsecond per schema); nested schemas load through here too.
        marshmallow raises its ``ValidationError`` from a frame that holds both the
        error and the body (and the error holds the body as ``data``): a reference
        cycle, freed only by the collector's next full pass, which production's
        ``GC_THRESHOLD`` makes rare. Four refused 16 MiB bodies then held over a GiB.
        Dropping the traceback and the data frees the body when the answer is sent.
        """
        self.bound(data)
        try:
            return super().load(data, many=many, partial=partial, unknown=unknown)
        except ValidationError as error:
            error.data = error.valid_data = None
            raise error.with_traceback(None) from None

    def bound(self, data: Any) -> None:
        """Refuse ``data`` (the raw body, before any field reads it) when it is larger than anything it may be."""
        if type(data) is not dict or self.unknown != RAISE:
            return
        known = self._known_keys()
        if data.keys() <= known:
            return
        unknown = data.keys() - known
        if len(unknown) <= SHOWN and all(len(key) <= CLIPPED for key in unknown):
            return
        first = [clip(key) for key in islice((k for k in data if k not in known), SHOWN)]
        more = f" and {len(unknown) - len(first)} more" if len(unknown) > len(first) else ""
        raise ValidationError({"_schema": [f"Unknown field(s): {', '.join(first)}{more}."]})

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


def one_of(data: dict[str, Any], first: str, second: str, neither: str) -> None:
    """Refuse a body naming both ``first`` and ``second``, or neither (``neither`` says what to send)."""
    if first in data and second in data:
        raise ValidationError(f"Send either {first!r} or {second!r}, not both.", "_schema")
    if first not in data and second not in data:
        raise ValidationError(neither, "_schema")
