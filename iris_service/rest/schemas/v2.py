"""Schemas of the Open Inference Protocol (KServe V2, Triton, MLServer)."""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from ...protocols.v2 import check_bounds
from .base import RequestSchema, ResponseSchema
from .fields import max_inputs

#: Tensor datatypes accepted as model input (numbers only; BYTES and BOOL are not features).
INPUT_DATATYPES = ("FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")


class TensorInputSchema(RequestSchema):
    name = fields.String(required=True, metadata={"example": "input-0"})
    shape = fields.List(fields.Integer(strict=True, validate=validate.Range(min=0)), required=True,
                        metadata={"example": [1, 4]})
    datatype = fields.String(required=True, validate=validate.OneOf(INPUT_DATATYPES), metadata={"example": "FP32"})
    parameters = fields.Dict(allow_none=True,
                             metadata={"description": "`binary_data_size` when the tensor follows the JSON header"})
    data = fields.Raw(metadata={"description": "Values, flat in row-major order or nested",
                                "example": [5.1, 3.5, 1.4, 0.2]})


class RequestedOutputSchema(RequestSchema):
    name = fields.String(required=True, validate=validate.OneOf(("predict", "predict_proba"),
                                                                error="Unknown output {input!r}; choose from {choices}."))
    parameters = fields.Dict(allow_none=True,
                             metadata={"description": "`binary_data: true` asks for the tensor as raw bytes"})


class InferRequestSchema(RequestSchema):
    """An inference request; binary tensors follow the JSON when ``Inference-Header-Content-Length`` is set.

    The optional fields are those KServe's and MLServer's servers accept, null
    included (their models are pydantic ``Optional`` fields); KServe's SDK puts
    ``model_name`` (and ``id``) in every body, so the body may name the model
    too, as long as it names the one in the URL. The protocol's own bounds
    (inputs, dimensions, outputs, parameters, id) are checked on the raw body
    first: marshmallow would otherwise convert every item of an
    eight-million-dimension ``shape`` before anything refused it.
    """

    def bound(self, data: Any) -> None:
        super().bound(data)
        inputs = data.get("inputs") if isinstance(data, dict) else None
        # Every model takes one input: the widest model served is looked up only for more.
        check_bounds(data, max_inputs() if isinstance(inputs, list) and len(inputs) > 1 else None)

    id = fields.String(allow_none=True, metadata={"description": "Echoed in the response"})
    model_name = fields.String(allow_none=True, metadata={
        "description": "Sent by KServe's SDK; must be the model in the URL"})
    model_version = fields.String(allow_none=True, metadata={
        "description": "When given, must be the version served (or the one in the URL)"})
    parameters = fields.Dict(allow_none=True, metadata={
        "description": "`binary_data_output: true` asks for every output as bytes"})
    inputs = fields.List(fields.Nested(TensorInputSchema), required=True, validate=validate.Length(min=1))
    outputs = fields.List(fields.Nested(RequestedOutputSchema), allow_none=True,
                          metadata={"description": "Outputs wanted: predict and/or predict_proba (default predict)"})


class TensorOutputSchema(Schema):
    name = fields.String(required=True)
    shape = fields.List(fields.Integer(), required=True)
    datatype = fields.String(required=True)
    parameters = fields.Dict()
    data = fields.List(fields.Raw(), metadata={"description": "Flat, row-major; absent for binary outputs"})


class InferResponseSchema(ResponseSchema):
    id = fields.String()
    model_name = fields.String(required=True)
    model_version = fields.String(required=True)
    outputs = fields.List(fields.Nested(TensorOutputSchema), required=True)


class TensorMetadataSchema(Schema):
    name = fields.String(required=True)
    datatype = fields.String(required=True)
    shape = fields.List(fields.Integer(), required=True)


class ModelMetadataSchema(ResponseSchema):
    name = fields.String(required=True)
    versions = fields.List(fields.String())
    platform = fields.String(required=True)
    inputs = fields.List(fields.Nested(TensorMetadataSchema), required=True)
    outputs = fields.List(fields.Nested(TensorMetadataSchema), required=True)
    parameters = fields.Dict(metadata={"description": "feature_names and class_names of the model"})


class ServerMetadataSchema(ResponseSchema):
    name = fields.String(required=True)
    version = fields.String(required=True)
    extensions = fields.List(fields.String(), required=True)


class ServerLiveSchema(ResponseSchema):
    live = fields.Boolean(required=True)


class ServerReadySchema(ResponseSchema):
    ready = fields.Boolean(required=True)


class ModelReadySchema(ResponseSchema):
    name = fields.String(required=True)
    ready = fields.Boolean(required=True)


class RepositoryIndexRequestSchema(RequestSchema):
    ready = fields.Boolean(metadata={"description": "Only list models that are ready"})


class RepositoryModelSchema(ResponseSchema):
    name = fields.String(required=True)
    version = fields.String(allow_none=True)
    state = fields.String(required=True, metadata={"description": "READY or UNAVAILABLE"})
    reason = fields.String(allow_none=True)


class RepositoryActionSchema(ResponseSchema):
    name = fields.String(required=True)
    version = fields.String(allow_none=True)
    state = fields.String(required=True)
