"""The Open Inference Protocol (KServe V2, Triton, MLServer) as one unit: header checks, tensors, binary data.

Inputs are either one tensor named ``input-0`` of shape ``[N, n_features]``
(what KServe's and MLServer's scikit-learn servers take), or one tensor per
feature name of shape ``[N]`` or ``[N, 1]``. Outputs are ``predict`` and
``predict_proba``. Tensors travel as JSON or, with Triton's binary tensor data
extension, as raw little-endian bytes after the JSON header. Any front-end
(REST, gRPC) hands ``decode`` an ``InferRequest`` and sends what ``encode`` gives.
"""
from .binary import HEADER_LENGTH, loads_header, split_body
from .codec import INPUT_ERROR, InferRequest, InferResponse, decode, encode, model_metadata
from .tensors import DTYPES, INPUT_NAME, OUTPUTS, check_bounds, check_request

__all__ = [
    "DTYPES",
    "HEADER_LENGTH",
    "INPUT_ERROR",
    "INPUT_NAME",
    "OUTPUTS",
    "InferRequest",
    "InferResponse",
    "check_bounds",
    "check_request",
    "decode",
    "encode",
    "loads_header",
    "model_metadata",
    "split_body",
]
