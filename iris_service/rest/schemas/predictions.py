"""Request and response schemas of ``/predict`` and ``/models/<name>/predict``."""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validates_schema

from .base import RequestSchema, ResponseSchema, one_of
from .fields import FeatureRow, FeatureRows


class PredictRequestSchema(RequestSchema):
    """Exactly one of ``features`` (one row) or ``instances`` (a batch)."""

    features = FeatureRow(
        metadata={
            "description": "One row: numbers in the model's feature order, or an object "
            "keyed by feature name.",
            "oneOf": [
                {"type": "array", "items": {"type": "number"}, "minItems": 1},
                {"type": "object", "additionalProperties": {"type": "number"}, "minProperties": 1},
            ],
            "example": [5.1, 3.5, 1.4, 0.2],
        }
    )
    instances = FeatureRows(
        metadata={
            "description": "A batch of rows (lists or objects), answered in input order.",
            "type": "array",
            "minItems": 1,
            "items": {
                "oneOf": [
                    {"type": "array", "items": {"type": "number"}, "minItems": 1},
                    {"type": "object", "additionalProperties": {"type": "number"}, "minProperties": 1},
                ]
            },
            "example": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
        }
    )

    def load(self, data: Any, *, many: bool | None = None, partial: Any = None, unknown: str | None = None) -> Any:
        """``{"features": [...]}`` straight through its field; every other body the full way.

        That body is most of the traffic and its answer is known without the
        schema's machinery: one known key (nothing unknown, ``_one_of`` holds), no
        hooks. Marshmallow's loop over fields, processors and validators costs three
        times the field's own check; the field still validates every value. Any
        error is raised by the full path, so messages are exactly the usual ones.
        """
        if many is None and partial is None and type(data) is dict and len(data) == 1:
            row = data.get("features")
            if type(row) is list:
                try:
                    return {"features": self.fields["features"].deserialize(row, "features", data)}
                except ValidationError:
                    pass
        return super().load(data, many=many, partial=partial, unknown=unknown)

    @validates_schema
    def _one_of(self, data: dict[str, Any], **kwargs: Any) -> None:
        one_of(data, "features", "instances", "Send 'features' (one row) or 'instances' (a batch).")


class RowPredictionSchema(Schema):
    prediction = fields.Raw(
        required=True,
        metadata={"description": "Class index for classifiers, value for regressors"},
    )
    label = fields.String(metadata={"description": "Class name (classifiers)"})
    probabilities = fields.Dict(
        keys=fields.String(),
        values=fields.Float(),
        metadata={"description": "Class name to probability (classifiers with predict_proba)"},
    )


class PredictResponseSchema(ResponseSchema):
    """One row's answer, or ``predictions`` for a batch; always names the model."""

    prediction = fields.Raw(metadata={"description": "Class index (classifiers) or value"})
    label = fields.String()
    probabilities = fields.Dict(keys=fields.String(), values=fields.Float())
    predictions = fields.List(fields.Nested(RowPredictionSchema))
    model = fields.String(required=True, metadata={"description": "Model name"})
    version = fields.String(required=True, metadata={"description": "Model version"})
