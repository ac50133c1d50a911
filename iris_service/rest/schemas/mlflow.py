"""Schemas of the MLflow scoring protocol (``mlflow models serve``)."""
from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from ...protocols.bounds import MIN_COLUMNS
from .base import PlainErrorSchema, RequestSchema, ResponseSchema
from .fields import BoundedDict, BoundedList, FeatureRows, Rows, max_batch_size, max_columns
from .v1 import ColumnarInputs

_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


class PositionalRows(FeatureRows):
    """Rows of numbers only: ``dataframe_split`` names its columns separately."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Rows:
        if isinstance(value, list) and value and isinstance(value[0], dict):
            raise self.make_error("type")
        return super()._deserialize(value, attr, data, **kwargs)


class DataframeSplitSchema(RequestSchema):
    """pandas' ``split`` orientation: column names, rows of values, an optional index."""

    # Both lists are measured before marshmallow reads an item: columns by the widest model, labels by the rows.
    columns = BoundedList(fields.String(), limit=max_columns, what="columns", at_least=MIN_COLUMNS,
                          validate=validate.Length(min=1),
                          metadata={"description": "Column names; matched to the model's features in any order"})
    data = PositionalRows(required=True, metadata={
        "type": "array", "items": {"type": "array", "items": {"type": "number"}},
        "description": "Rows of values in the order of `columns`"})
    index = BoundedList(fields.Raw(), limit=max_batch_size, what="index labels (one per row)",
                        metadata={"description": "Row labels; accepted and ignored"})

    @validates_schema
    def _widths(self, data: dict[str, Any], **kwargs: Any) -> None:
        rows = data["data"]
        if "columns" in data and rows.shape[1] != len(data["columns"]):
            raise ValidationError(
                f"Rows have {rows.shape[1]} values but {len(data['columns'])} columns are named.", "data"
            )
        if "index" in data and len(data["index"]) != rows.shape[0]:
            raise ValidationError(f"Index has {len(data['index'])} labels for {rows.shape[0]} rows.", "index")


class InvocationsRequestSchema(RequestSchema):
    """Exactly one of MLflow's four JSON input formats (CSV bodies arrive as ``dataframe_split``)."""

    dataframe_split = fields.Nested(DataframeSplitSchema, metadata={
        "example": {"columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
                    "data": [[5.1, 3.5, 1.4, 0.2]]}})
    dataframe_records = FeatureRows(metadata={
        "description": "pandas' `records` orientation: one object per row",
        "type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}})
    instances = FeatureRows(metadata={
        "description": "TF Serving row format: rows as objects or lists in feature order",
        "type": "array", "items": {}})
    inputs = ColumnarInputs(metadata={
        "description": "TF Serving columnar format: feature name -> column, or a list of rows", "oneOf": [
            {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "number"}}},
            {"type": "array", "items": {}}]})
    params = BoundedDict(metadata={"description": "Inference parameters; this model takes none, so they are ignored"})

    @validates_schema
    def _one_format(self, data: dict[str, Any], **kwargs: Any) -> None:
        given = [key for key in _FORMATS if key in data]
        if len(given) != 1:
            raise ValidationError(
                "Send exactly one of " + ", ".join(_FORMATS)
                + (f"; got {', '.join(given)}." if given else "."),
                "_schema",
            )


class InvocationsResponseSchema(ResponseSchema):
    predictions = fields.List(fields.Raw(), required=True, metadata={
        "description": "The estimator's predict output per row: class values for classifiers, numbers for regressors"})


class PingSchema(ResponseSchema):
    status = fields.String(required=True, metadata={"example": "ready"})


class MlflowErrorSchema(PlainErrorSchema):
    """``{"error": ...}`` with the ``error_code`` and ``message`` MLflow's scoring server sends."""

    error_code = fields.String(required=True, metadata={
        "description": "MLflow's error code (BAD_REQUEST, TEMPORARILY_UNAVAILABLE, ...)", "example": "BAD_REQUEST"})
    message = fields.String(required=True, metadata={"description": "The same text as `error`"})
