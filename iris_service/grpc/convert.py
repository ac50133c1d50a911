"""Protobuf messages to and from the ``protocols.v2`` unit: the same decoder as REST, tensors as bytes.

A ``ModelInferRequest`` becomes the ``v2.InferRequest`` REST's binary tensor
extension would carry (a header whose inputs declare ``binary_data_size``, and
their bytes concatenated), so the one V2 decoder checks it and both transports
answer the same rows with the same bytes. Raw inputs are used as they are;
typed ``contents`` are turned into the declared datatype's little-endian bytes
first, checked for count and range. Answers mirror the request: raw inputs get
``raw_output_contents`` (as Triton answers tritonclient), typed ones typed
``contents``. Errors are the protocol's ``BadRequest`` with one line for the user.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import BadRequest
from ..protocols import Limits, v2
from ..protocols.v2.tensors import check_size
from ..runtime import Model
from .proto import inference_pb2 as pb

#: Datatype -> the ``InferTensorContents`` field holding its typed values (FP16 travels raw only).
CONTENTS_FIELD = {
    "FP32": "fp32_contents", "FP64": "fp64_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
}
#: The numpy type a contents field's values arrive in.
_FIELD_DTYPE = {
    "fp32_contents": np.dtype(np.float32), "fp64_contents": np.dtype(np.float64),
    "int_contents": np.dtype(np.int32), "int64_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint32), "uint64_contents": np.dtype(np.uint64),
}
#: Each field's packed key (field number, wire type 2). The float fields' packed bytes are the array's
#: own little-endian bytes, so 40,000 doubles cross in microseconds instead of the milliseconds one
#: Python float each costs. The integer fields' are varints: an array of values under 128 (class
#: indices) is its own bytes too; larger ones go value by value, which protobuf does faster than numpy.
_KEY = {name: bytes([pb.InferTensorContents.DESCRIPTOR.fields_by_name[name].number << 3 | 2]) for name in _FIELD_DTYPE}
_PACKED = {
    name: (_KEY[name], dtype.newbyteorder("<"))
    for name, dtype in _FIELD_DTYPE.items() if name in ("fp32_contents", "fp64_contents")
}


def _varint(n: int) -> bytes:
    """``n`` (at least 0) as a protobuf varint: seven bits a byte, low first, the high bit meaning more."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def packed_values(contents: pb.InferTensorContents, field: str, count: int) -> np.ndarray:
    """The ``count`` values of ``contents.<field>`` (its only field) as an array.

    A float field is read from the message's own encoding: protobuf writes a
    proto3 repeated double or float packed, as its little-endian bytes after the
    key and a length, whatever form the client sent. Anything else, or an
    encoding not of that form, goes value by value.
    """
    packed = _PACKED.get(field)
    dtype = _FIELD_DTYPE[field]
    if packed is not None and count:
        key, little = packed
        data = contents.SerializeToString()
        size = count * little.itemsize
        length = _varint(size)
        start = len(key) + len(length)
        if data[: start] == key + length and len(data) == start + size:
            return np.frombuffer(data, dtype=little, offset=start).astype(dtype, copy=False)
    return np.fromiter(getattr(contents, field), dtype=dtype, count=count)


def set_values(contents: pb.InferTensorContents, field: str, data: Any) -> None:
    """Fill ``contents.<field>`` with ``data``: an array by its packed encoding, a list value by value."""
    packed = _PACKED.get(field)
    payload = None
    if isinstance(data, np.ndarray) and data.size:
        if packed is not None and data.dtype.kind in "fiu":
            payload = np.ascontiguousarray(data.ravel(), dtype=packed[1]).tobytes()
        elif packed is None and data.dtype.kind in "iu" and data.min() >= 0 and data.max() < 0x80:
            payload = data.ravel().astype(np.uint8).tobytes()  # a varint under 128 is the value's one byte
    if payload is None:  # a list, an empty array, larger integers, or a float for an integer field (TypeError)
        getattr(contents, field).extend(data.tolist() if isinstance(data, np.ndarray) else data)
        return
    contents.MergeFromString(_KEY[field] + _varint(len(payload)) + payload)


def infer_request(message: pb.ModelInferRequest, model: Model, limits: Limits) -> tuple[v2.InferRequest, bool]:
    """The V2 request ``message`` carries for ``model``, and whether to answer raw outputs.

    The header is checked (``v2.check_request``) and every tensor's declared
    size bounded by the row limit before any of its values is read.
    """
    raw = message.raw_input_contents
    inputs = message.inputs
    header: dict[str, Any] = {
        "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in inputs],
        "parameters": {"binary_data_output": bool(raw)},
    }
    if message.outputs:
        header["outputs"] = [{"name": o.name, "parameters": {"binary_data": bool(raw)}} for o in message.outputs]
    if message.id:
        header["id"] = message.id
    v2.check_request(header, max_inputs=max(model.n_features, 1))
    if raw and len(raw) != len(inputs):
        raise BadRequest(
            f"raw_input_contents holds {len(raw)} buffers for {len(inputs)} inputs; send one per input, in order."
        )
    chunks = []
    for i, (tensor, spec) in enumerate(zip(inputs, header["inputs"], strict=True)):
        count = check_size(spec, limits.max_rows, model.n_features)
        if raw:
            if tensor.HasField("contents"):
                raise BadRequest(f"Input {tensor.name!r} has contents beside raw_input_contents; send one of them.")
            data = raw[i]
            _check_raw_size(spec, count, len(data))
        elif tensor.HasField("contents"):
            data = _typed_bytes(spec, count, tensor.contents)
        else:
            raise BadRequest(f"Input {tensor.name!r} has no contents and the request no raw_input_contents.")
        spec["parameters"] = {"binary_data_size": len(data)}
        chunks.append(data)
    return v2.InferRequest(header, b"".join(chunks)), bool(raw)


def _check_raw_size(spec: Mapping[str, Any], count: int, size: int) -> None:
    needed = count * v2.DTYPES[spec["datatype"]].itemsize
    if size != needed:
        raise BadRequest(
            f"Input {spec['name']!r} of shape {spec['shape']} and datatype {spec['datatype']} needs {needed} "
            f"bytes; its raw_input_contents holds {size}."
        )


def _typed_bytes(spec: Mapping[str, Any], count: int, contents: pb.InferTensorContents) -> bytes:
    """Typed values as the declared datatype's bytes: the same bytes a raw client would send."""
    name, datatype = spec["name"], spec["datatype"]
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise BadRequest(f"Input {name!r} is {datatype}: send it as raw_input_contents (contents have no field for it).")
    given = [f.name for f, _ in contents.ListFields()]
    others = [f for f in given if f != field]
    if others:
        raise BadRequest(f"Input {name!r} is {datatype}: its values go in contents.{field}, not {', '.join(others)}.")
    values = getattr(contents, field)
    if len(values) != count:
        raise BadRequest(
            f"Input {name!r} has shape {spec['shape']} ({count} values) but its contents hold {len(values)}."
        )
    array = packed_values(contents, field, count)
    target = v2.DTYPES[datatype]
    if target.kind in "iu" and target.itemsize < array.dtype.itemsize and array.size:
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise BadRequest(f"Input {name!r}: a value is out of range for {datatype}.")
    return array.astype(target, copy=False).tobytes()


def infer_response(answer: v2.InferResponse, raw: bool) -> pb.ModelInferResponse:
    """The protobuf answer for what ``v2.encode`` gave: raw buffers in output order, or typed contents."""
    header = answer.header
    response = pb.ModelInferResponse(
        model_name=header["model_name"], model_version=header["model_version"], id=header.get("id") or ""
    )
    offset = 0
    for tensor in header["outputs"]:
        out = response.outputs.add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
        if raw:
            size = tensor["parameters"]["binary_data_size"]
            response.raw_output_contents.append(answer.binary[offset:offset + size])
            offset += size
        else:
            set_values(out.contents, CONTENTS_FIELD[tensor["datatype"]], tensor["data"])
    return response


def model_metadata(metadata: Mapping[str, Any]) -> pb.ModelMetadataResponse:
    """``v2.model_metadata``'s answer as a message (its ``parameters`` have no field in the protocol)."""
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=metadata["name"],
        versions=metadata["versions"],
        platform=metadata["platform"],
        inputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in metadata["inputs"]],
        outputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in metadata["outputs"]],
    )
