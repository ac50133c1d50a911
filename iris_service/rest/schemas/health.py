"""Response schemas of the health blueprint."""
from __future__ import annotations

from marshmallow import fields

from .base import ResponseSchema


class ModelStatusSchema(ResponseSchema):
    state = fields.String(required=True, metadata={"description": "READY or UNAVAILABLE"})
    version = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)


class HealthSchema(ResponseSchema):
    status = fields.String(required=True, metadata={"example": "API is running!"})
    model = fields.String(allow_none=True, metadata={"description": "Default model's name"})
    version = fields.String(allow_none=True, metadata={"description": "Default model's version"})
    ready = fields.Boolean(required=True)
    models = fields.Dict(keys=fields.String(), values=fields.Nested(ModelStatusSchema))


class LiveSchema(ResponseSchema):
    status = fields.String(required=True, metadata={"example": "alive"})


class ReadySchema(ResponseSchema):
    status = fields.String(required=True, metadata={"example": "ready"})
    models = fields.Dict(keys=fields.String(), values=fields.String())
