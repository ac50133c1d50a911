"""Schemas of ``GET /models/<name>/drift``."""
from __future__ import annotations

from marshmallow import fields

from .base import ResponseSchema


class FeatureDriftSchema(ResponseSchema):
    psi = fields.Float(allow_none=True, metadata={
        "description": "Population stability index of the window against the training deciles (null: no rows yet)"})
    out_of_range_share = fields.Float(allow_none=True, metadata={
        "description": "Share of the window's values outside the training min and max"})
    out_of_range_total = fields.Integer(metadata={"description": "Values outside the training range since load"})


class DriftSchema(ResponseSchema):
    model = fields.String(required=True)
    version = fields.String(required=True)
    tracked = fields.Boolean(required=True, metadata={"description": "False: drift is off or the model has no profile"})
    reason = fields.String(allow_none=True, metadata={"description": "Why drift is not tracked (null when it is)"})
    window = fields.Integer(metadata={"description": "DRIFT_WINDOW: rows the PSI is computed over"})
    rows = fields.Integer(metadata={"description": "Rows in the window now"})
    observed = fields.Integer(metadata={"description": "Rows observed since this version was loaded"})
    features = fields.Dict(keys=fields.String(), values=fields.Nested(FeatureDriftSchema))
