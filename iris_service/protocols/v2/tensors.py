"""V2 request headers checked without any framework: names, datatypes, shapes, outputs, and their bounds.

The REST layer's marshmallow schema documents the same shape for OpenAPI, but
every front-end (REST, gRPC) goes through ``check_request``, so a header the
codec reads is always well-formed and every list it carries is bounded before
any per-item work.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...errors import BadRequest
from ..bounds import MAX_PARAMETERS

INPUT_NAME = "input-0"
#: Datatype -> little-endian numpy dtype, as the binary extension lays tensors out.
DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in {
        "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
        "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
        "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    }.items()
}
#: Our models take ``input-0`` as [N, features] or one [N] / [N, 1] tensor per feature.
MAX_DIMENSIONS = 2
OUTPUTS = ("predict", "predict_proba")
#: Longest tensor name (or request id, echoed in the answer) accepted.
MAX_NAME_LENGTH = 256
#: Top-level fields naming the model, as KServe's SDK and the gRPC request carry them.
MODEL_FIELDS = ("model_name", "model_version")


def check_bounds(header: Any, max_inputs: int | None = None) -> None:
    """Refuse a header whose lists or objects are longer than any model takes, before any item is read.

    Only lengths are measured (constant time each); whatever else is malformed is
    left to ``check_request`` (or to the REST schema, which calls this first so
    that marshmallow never converts eight million dimensions one by one).
    """
    if not isinstance(header, Mapping):
        return
    inputs = header.get("inputs")
    if isinstance(inputs, list):
        if max_inputs is not None and len(inputs) > max_inputs:
            raise BadRequest(f"At most {max_inputs} inputs for this model; got {len(inputs)}.")
        for i, spec in enumerate(inputs):
            if isinstance(spec, Mapping):
                _bound_input(i, spec)
    outputs = header.get("outputs")
    if isinstance(outputs, list):
        if len(outputs) > len(OUTPUTS):
            raise BadRequest(f"'outputs' must be a list of at most {len(OUTPUTS)} requested outputs.")
        for i, output in enumerate(outputs):
            if isinstance(output, Mapping):
                name = output.get("name")
                if isinstance(name, str) and len(name) > MAX_NAME_LENGTH:
                    raise BadRequest(f"Output {i}: the name is {len(name)} characters; at most {MAX_NAME_LENGTH}.")
                _bound_parameters(output, f"Output {i}")
    request_id = header.get("id")
    if isinstance(request_id, str) and len(request_id) > MAX_NAME_LENGTH:
        raise BadRequest(f"'id' is {len(request_id)} characters; at most {MAX_NAME_LENGTH}.")
    _bound_parameters(header, "The request")


def _bound_input(i: int, spec: Mapping[str, Any]) -> None:
    name = spec.get("name")
    what = f"Input {name!r}" if isinstance(name, str) and 0 < len(name) <= MAX_NAME_LENGTH else f"Input {i}"
    shape = spec.get("shape")
    if isinstance(shape, list) and len(shape) > MAX_DIMENSIONS:
        raise BadRequest(f"{what} has {len(shape)} dimensions; this model's inputs have 1 or {MAX_DIMENSIONS}.")
    _bound_parameters(spec, what)


def _bound_parameters(item: Mapping[str, Any], what: str) -> None:
    parameters = item.get("parameters")
    if isinstance(parameters, Mapping) and len(parameters) > MAX_PARAMETERS:
        raise BadRequest(f"{what}: 'parameters' has {len(parameters)} entries; at most {MAX_PARAMETERS}.")


def check_request(header: Any, max_inputs: int | None = None) -> None:
    """Raise ``BadRequest`` naming the first malformed field of an inference request header."""
    if not isinstance(header, Mapping):
        raise BadRequest("The inference request must be a JSON object.")
    check_bounds(header, max_inputs)
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors.")
    for i, spec in enumerate(inputs):
        _check_input(i, spec)
    outputs = header.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or len(outputs) > len(OUTPUTS):
            raise BadRequest(f"'outputs' must be a list of at most {len(OUTPUTS)} requested outputs.")
        for i, output in enumerate(outputs):
            if not isinstance(output, Mapping) or not isinstance(output.get("name"), str):
                raise BadRequest(f"Output {i} must be an object with a 'name'.")
            _check_parameters(output, f"Output {i}")
    # Optional fields may be null, as KServe's and MLServer's (pydantic) servers accept.
    for key in ("id", *MODEL_FIELDS):
        if header.get(key) is not None and not isinstance(header[key], str):
            raise BadRequest(f"{key!r} must be a string.")
    _check_parameters(header, "The request")


def check_model(header: Mapping[str, Any], name: str, version: str) -> None:
    """Refuse a body that names another model (or version) than the one the URL chose.

    KServe's SDK writes ``model_name`` into every body; its server ignores it and
    answers with the URL's model. A body naming a different model is the
    client's mistake, so it is refused rather than answered by the wrong model.
    """
    for key, served in zip(MODEL_FIELDS, (name, str(version)), strict=True):
        given = header.get(key)
        if given is not None and given != served:
            shown = given if len(given) <= MAX_NAME_LENGTH else given[:MAX_NAME_LENGTH] + "..."
            what = "model" if key == "model_name" else "model version"
            raise BadRequest(f"The body's {key} is {shown!r} but this request is for {what} {served!r}.")


def _check_input(i: int, spec: Any) -> None:
    if not isinstance(spec, Mapping):
        raise BadRequest(f"Input {i} must be an object with name, shape and datatype.")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"Input {i} needs a 'name' (a non-empty string).")
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequest(f"Input {i}: the name is {len(name)} characters; at most {MAX_NAME_LENGTH}.")
    datatype = spec.get("datatype")
    if datatype not in DTYPES:
        shown = datatype if isinstance(datatype, str) and len(datatype) <= 32 else type(datatype).__name__
        raise BadRequest(f"Input {name!r}: datatype {shown!r} is not one of {', '.join(DTYPES)}.")
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape[: MAX_DIMENSIONS + 1]):
        raise BadRequest(f"Input {name!r}: 'shape' must be a list of whole numbers >= 0.")
    if not 1 <= len(shape) <= MAX_DIMENSIONS:
        raise BadRequest(
            f"Input {name!r} has {len(shape)} dimensions; this model's inputs have 1 or {MAX_DIMENSIONS}."
        )
    _check_parameters(spec, f"Input {name!r}")


def _check_parameters(item: Mapping[str, Any], what: str) -> None:
    parameters = item.get("parameters")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise BadRequest(f"{what}: 'parameters' must be an object.")


def check_size(spec: Mapping[str, Any], max_rows: int, n_features: int) -> int:
    """The element count a tensor declares, refused before decoding when it exceeds the row limit."""
    shape = spec["shape"]
    rows = shape[0]
    if rows > max_rows:
        raise BadRequest(f"At most {max_rows} rows per request; got {rows}.")
    count = math.prod(shape)
    if count > max_rows * max(n_features, 1):
        raise BadRequest(
            f"Input {spec['name']!r} declares {count} values; at most {max_rows * max(n_features, 1)} "
            f"({max_rows} rows of {n_features} features)."
        )
    return count
