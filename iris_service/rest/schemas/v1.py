"""Schemas of the V1 protocol (TensorFlow Serving REST / KServe V1)."""
from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validates_schema

from ...protocols.bounds import clip
from .base import RequestSchema, ResponseSchema, one_of
from .fields import FeatureRows, Rows, as_validation_error, max_batch_size, named_rows, width_limit

_ROW_ONE_OF = [
    {"type": "array", "items": {"type": "number"}, "minItems": 1},
    {"type": "object", "additionalProperties": {"type": "number"}, "minProperties": 1},
]


class ColumnarInputs(FeatureRows):
    """TensorFlow Serving's ``inputs``: a list of rows, or feature name -> column of values.

    Columns become named rows, so the model orders them by its feature names
    exactly as it does for ``instances`` given as objects.
    """

    default_error_messages = {
        **FeatureRows.default_error_messages,
        "columns": "Must be a list of rows or an object of feature name to a list of numbers.",
        "column_type": "Must be a list of numbers, one per row.",
        "column_length": "Expected {expected} values like the first column, got {got}.",
        "too_wide": "At most {limit} columns; got {count}.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Rows:
        if isinstance(value, list):
            return super()._deserialize(value, attr, data, **kwargs)
        if not isinstance(value, dict) or not value:
            raise self.make_error("columns")
        # Both bounds before a column is turned into rows: columns by the widest model, rows by the limit.
        width = width_limit(len(value))
        if width is not None and len(value) > width:
            raise self.make_error("too_wide", limit=width, count=len(value))
        lengths = {}
        for name, column in value.items():
            if not isinstance(column, list) or not column:
                raise ValidationError({clip(name): [self.error_messages["column_type"]]})
            lengths[name] = len(column)
        expected = next(iter(lengths.values()))
        for name, got in lengths.items():
            if got != expected:
                message = self.error_messages["column_length"].format(expected=expected, got=got)
                raise ValidationError({clip(name): [message]})
        limit = max_batch_size()
        if limit is not None and expected > limit:
            raise self.make_error("too_many", limit=limit, count=expected)
        rows = [dict(zip(value, values, strict=False)) for values in zip(*value.values(), strict=False)]
        with as_validation_error():
            return named_rows(rows)
        raise AssertionError("unreachable")


class V1PredictRequestSchema(RequestSchema):
    """Row format (``instances``) or TensorFlow Serving's columnar format (``inputs``)."""

    signature_name = fields.String(
        metadata={"description": "Accepted for TensorFlow Serving clients; the model has one signature."}
    )
    instances = FeatureRows(
        metadata={
            "description": "Rows: lists of numbers in the model's feature order, or objects keyed by feature name.",
            "type": "array",
            "minItems": 1,
            "items": {"oneOf": _ROW_ONE_OF},
            "example": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]],
        }
    )
    inputs = ColumnarInputs(
        metadata={
            "description": "Columnar format: a list of rows, or an object of feature name to a column of values.",
            "oneOf": [
                {"type": "array", "minItems": 1, "items": {"oneOf": _ROW_ONE_OF}},
                {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "number"}}},
            ],
            "example": {"sepal_length": [6.8, 6.0], "sepal_width": [2.8, 3.4],
                        "petal_length": [4.8, 4.5], "petal_width": [1.4, 1.6]},
        }
    )

    @validates_schema
    def _one_of(self, data: dict[str, Any], **kwargs: Any) -> None:
        one_of(data, "instances", "inputs", "Send 'instances' (row format) or 'inputs' (columnar format).")


class V1PredictResponseSchema(ResponseSchema):
    predictions = fields.List(
        fields.Raw(),
        metadata={"description": "Row format: class index (classifiers) or value (regressors) per row"},
    )
    outputs = fields.List(fields.Raw(), metadata={"description": "Columnar format: the same, under TF Serving's key"})


class V1ModelSchema(ResponseSchema):
    name = fields.String(required=True)
    ready = fields.Boolean(required=True)
