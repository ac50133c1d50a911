"""Schemas of the model registry endpoints."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from .base import ResponseSchema


class FeatureSchema(ResponseSchema):
    name = fields.String(required=True)
    min = fields.Float(allow_none=True, metadata={"description": "Smallest value seen in training"})
    max = fields.Float(allow_none=True, metadata={"description": "Largest value seen in training"})
    deciles = fields.List(fields.Float(), metadata={"description": "The training rows' deciles (drift's bins)"})
    decile_shares = fields.List(fields.Float(), metadata={"description": "Share of training rows in each bin"})


class ModelSummarySchema(ResponseSchema):
    name = fields.String(required=True)
    state = fields.String(required=True, metadata={"description": "READY or UNAVAILABLE"})
    version = fields.String(allow_none=True, metadata={"description": "Version being served"})
    versions = fields.List(fields.String(), metadata={"description": "Versions available on disk"})
    default = fields.Boolean(required=True)


class ModelListSchema(ResponseSchema):
    models = fields.List(fields.Nested(ModelSummarySchema), required=True)
    default = fields.String(allow_none=True)


class ModelDetailSchema(ResponseSchema):
    """The manifest's public part: no file system paths."""

    name = fields.String(required=True)
    version = fields.String(required=True)
    format = fields.String()
    sha256 = fields.String()
    estimator = fields.String()
    task = fields.String()
    feature_names = fields.List(fields.String())
    n_features = fields.Integer()
    class_names = fields.List(fields.String(), allow_none=True)
    classes = fields.List(fields.Raw(), allow_none=True)
    input_schema = fields.List(fields.Nested(FeatureSchema))
    training = fields.Dict()
    metrics = fields.Dict()
    versions = fields.Dict(keys=fields.String(), values=fields.String())
    created_at = fields.String()
    source = fields.String(allow_none=True)
    manifest_format = fields.Integer()
    available_versions = fields.List(fields.String())


class ReloadRequestSchema(Schema):
    # An empty ?version= is a malformed request (422), not a search for version "".
    version = fields.String(validate=validate.Length(min=1),
                            metadata={"description": "Version to load (default: the newest, or the pinned one)"})


class ReloadResponseSchema(ResponseSchema):
    name = fields.String(required=True)
    version = fields.String(required=True)
    previous_version = fields.String(allow_none=True)
