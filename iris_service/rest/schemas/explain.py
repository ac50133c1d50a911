"""Response schemas of ``/models/<name>/explain`` and V1 ``:explain`` (requests are those of predict)."""
from __future__ import annotations

from marshmallow import Schema, fields

from .base import ResponseSchema

_CONTRIBUTIONS = (
    "One list per class (in `classes` order), one contribution per feature (in `features` order): "
    "`baseline[j] + sum(contributions[j]) == scores[j]`."
)


class ExplainedRowSchema(Schema):
    prediction = fields.Integer(required=True, metadata={"description": "Class index, as /predict answers"})
    label = fields.String(required=True, metadata={"description": "Class name"})
    scores = fields.List(fields.Float(), required=True,
                         metadata={"description": "The explained output per class (see `output`)"})
    contributions = fields.List(fields.List(fields.Float()), required=True, metadata={"description": _CONTRIBUTIONS})


class _Explained(ResponseSchema):
    method = fields.String(required=True, metadata={
        "description": "`linear` (exact, coefficient x (value - training mean) in the decision function's "
                       "space) or `tree_path_dependent` (TreeSHAP)"})
    output = fields.String(required=True, metadata={
        "description": "What `scores` are: `decision_function` (linear models, gradient boosting) or "
                       "`probability` (forests, single trees)"})
    classes = fields.List(fields.String(), required=True, metadata={"description": "Class names"})
    features = fields.List(fields.String(), required=True, metadata={"description": "Feature names"})
    baseline = fields.List(fields.Float(), required=True,
                           metadata={"description": "Per class: the score the contributions start from"})
    explanations = fields.List(fields.Nested(ExplainedRowSchema),
                               metadata={"description": "One per row, for a batch (`instances`, `inputs`)"})


class ExplainResponseSchema(_Explained):
    """One row's explanation (``features``), or ``explanations`` for a batch; names the model."""

    prediction = fields.Integer(metadata={"description": "Class index (one-row request)"})
    label = fields.String()
    scores = fields.List(fields.Float())
    contributions = fields.List(fields.List(fields.Float()), metadata={"description": _CONTRIBUTIONS})
    model = fields.String(required=True, metadata={"description": "Model name"})
    version = fields.String(required=True, metadata={"description": "Model version"})


class V1ExplainResponseSchema(_Explained):
    """``explanations``, one per row of ``instances`` or ``inputs``."""
