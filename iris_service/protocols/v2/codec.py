"""V2 decode and encode: tensors to the model's float64 rows, a ``Prediction`` to output tensors."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from ...errors import BadRequest
from ...runtime import Model, Prediction
from .. import Decoded, Limits
from ..bounds import NAMES_SHOWN, clip, some
from .tensors import DTYPES, INPUT_NAME, check_model, check_request, check_size

#: The status of this protocol's input errors (its specification says 400).
INPUT_ERROR = BadRequest

_NUMBER_TYPES = frozenset({int, float})


@dataclass(frozen=True)
class InferRequest:
    """A validated JSON header and the binary tensor bytes that followed it."""

    header: Mapping[str, Any]
    binary: bytes = b""


@dataclass(frozen=True)
class InferResponse:
    """The JSON header of the answer and the binary outputs to send after it (if any)."""

    header: dict[str, Any]
    binary: bytes = b""
    has_binary: bool = False


def decode(body: InferRequest, model: Model, limits: Limits) -> Decoded:
    header = body.header
    # One input-0, or one input per feature: anything longer is refused before any tensor is read.
    check_request(header, max_inputs=max(model.n_features, 1))
    check_model(header, model.name, model.version)
    # Every declared size is checked, and the binary tail measured against their sum, before a value is read.
    counts: dict[str, int] = {}
    declared = 0
    for spec in header["inputs"]:
        if spec["name"] in counts:
            raise BadRequest(f"Input {spec['name']!r} is given twice.")
        counts[spec["name"]] = count = check_size(spec, limits.max_rows, model.n_features)
        size = _binary_size(spec, count)
        if declared + size > len(body.binary):
            raise BadRequest(
                f"Input {spec['name']!r} needs {size} bytes of binary data but only "
                f"{len(body.binary) - declared} follow."
            )
        declared += size
    if declared != len(body.binary):
        raise BadRequest(
            f"{len(body.binary)} bytes of binary data follow the JSON header but the inputs' "
            f"binary_data_size parameters add up to {declared}."
        )
    tensors: dict[str, npt.NDArray[np.float64]] = {}
    offset = 0
    for spec in header["inputs"]:
        tensors[spec["name"]], used = _tensor(spec, counts[spec["name"]], body.binary, offset)
        offset += used
    x = _matrix(tensors, model)
    return Decoded(x, context={"id": header.get("id"), "outputs": _requested_outputs(header, model)},
                   location=("inputs",))


def encode(prediction: Prediction, model: Model, decoded: Decoded) -> InferResponse:
    """Output tensors in the order asked; binary ones are concatenated in that order."""
    outputs = []
    chunks = []
    for name, binary in decoded.context["outputs"]:
        array, datatype = _output(name, prediction)
        typed = array.astype(DTYPES[datatype], copy=False)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            raw = typed.tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            # The JSON provider writes a float64 or int64 array exactly as its tolist(),
            # without making a Python number per value (a third of a 10k-row answer's cost).
            flat = typed.ravel()
            tensor["data"] = flat if flat.dtype.isnative else flat.tolist()
        outputs.append(tensor)
    header: dict[str, Any] = {}
    if decoded.context.get("id") is not None:
        header["id"] = decoded.context["id"]
    header.update(model_name=model.name, model_version=model.version, outputs=outputs)
    return InferResponse(header, b"".join(chunks), has_binary=bool(chunks))


def model_metadata(model: Model, versions: list[str]) -> dict[str, Any]:
    """The model's tensors as the protocol's model metadata describes them."""
    outputs = [{"name": "predict", "datatype": "INT64" if model.is_classifier else "FP64", "shape": [-1]}]
    if model.has_probabilities:
        outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(model.class_names or ())]})
    return {
        "name": model.name,
        "versions": versions,
        "platform": f"sklearn_{model.manifest.format}",
        "inputs": [{"name": INPUT_NAME, "datatype": "FP64", "shape": [-1, model.n_features]}],
        "outputs": outputs,
        "parameters": {"feature_names": list(model.feature_names), "class_names": list(model.class_names or ())},
    }


def _binary_size(spec: Mapping[str, Any], count: int) -> int:
    """The bytes of binary data an input declares (0 for JSON data), checked against its shape."""
    name, shape, datatype = spec["name"], spec["shape"], spec["datatype"]
    size = (spec.get("parameters") or {}).get("binary_data_size")
    if size is None:
        if "data" not in spec:
            raise BadRequest(f"Input {name!r} has neither data nor a binary_data_size parameter.")
        return 0
    if "data" in spec:
        raise BadRequest(f"Input {name!r} has both data and binary_data_size; send one.")
    if type(size) is not int or size < 0:
        raise BadRequest(f"Input {name!r}: binary_data_size must be a whole number of bytes.")
    itemsize = DTYPES[datatype].itemsize
    if size != count * itemsize:
        raise BadRequest(
            f"Input {name!r} of shape {shape} and datatype {datatype} needs {count * itemsize} "
            f"bytes of binary data; binary_data_size says {size}."
        )
    return size


def _tensor(
    spec: Mapping[str, Any], count: int, binary: bytes, offset: int
) -> tuple[npt.NDArray[np.float64], int]:
    """One input as float64 of its declared shape (``count`` values), and how many binary bytes it used.

    ``decode`` has checked the binary sizes; JSON data is checked here, its size before its values.
    """
    name, shape, datatype = spec["name"], spec["shape"], spec["datatype"]
    dtype = DTYPES[datatype]
    if "data" in spec:
        flat = _json_values(spec["data"], name, datatype, shape, count)
        used = 0
    else:
        flat = np.frombuffer(binary, dtype=dtype, count=count, offset=offset)
        used = count * dtype.itemsize
    with np.errstate(over="ignore", invalid="ignore"):
        array = flat.astype(np.float64).reshape(shape)
    if not np.isfinite(array).all():
        raise BadRequest(f"Input {name!r} holds NaN or infinite values; send finite numbers.")
    return array, used


def _json_values(data: Any, name: str, datatype: str, shape: list[int], count: int) -> npt.NDArray[Any]:
    """JSON tensor data, flat or nested, checked and converted in bulk.

    Each level of nesting is measured before it is walked: no level of data that
    fits the shape holds more lists than ``max(count, shape[0])`` (the rows, when
    a row is empty), so data larger than declared is refused by its length.
    """
    if not isinstance(data, list):
        raise BadRequest(f"Input {name!r}: data must be a list of numbers (flat or nested).")
    bound = max(count, shape[0])
    larger = f"Input {name!r} has shape {shape} ({count} values) but its data holds"
    flat = data
    while flat and type(flat[0]) is list:
        if len(flat) > bound:
            raise BadRequest(f"{larger} more.")
        width = len(flat[0])
        if any(type(v) is not list or len(v) != width for v in flat):
            raise BadRequest(f"Input {name!r}: nested data must be a regular array (no ragged or mixed rows).")
        if len(flat) * width > bound:
            # The count is known when the next level is the last one; deeper, only that it is too many.
            last = not (width and type(flat[0][0]) is list)
            raise BadRequest(f"{larger} {len(flat) * width}." if last else f"{larger} more.")
        flat = list(chain.from_iterable(flat))
    if len(flat) != count:
        raise BadRequest(f"{larger} {len(flat)}.")
    kinds = set(map(type, flat))  # in C: a third of a set comprehension's cost on 40,000 values
    if not kinds <= _NUMBER_TYPES:
        bad = next(v for v in flat if type(v) not in _NUMBER_TYPES)
        raise BadRequest(f"Input {name!r}: data must hold numbers only; got {_shown(bad)}.")
    dtype = DTYPES[datatype]
    if dtype.kind in "iu" and float in kinds and not all(float(v).is_integer() for v in flat):
        raise BadRequest(f"Input {name!r} is {datatype}; its data must be whole numbers.")
    try:
        with np.errstate(over="ignore"):
            # Values take the declared type first, so JSON and binary FP32 give the same answer.
            return np.array(flat, dtype=dtype)
    except OverflowError:
        raise BadRequest(f"Input {name!r}: a value is out of range for {datatype}.") from None


def _shown(value: Any) -> str:
    """A client's value in a message: its JSON, clipped."""
    return clip(orjson.dumps(value).decode())


def _matrix(tensors: dict[str, npt.NDArray[np.float64]], model: Model) -> npt.NDArray[np.float64]:
    names = model.feature_names
    n = model.n_features
    expected = (f"This model takes {INPUT_NAME!r} with shape [-1, {n}], or one input per feature: "
                f"{some(names, NAMES_SHOWN)}.")
    if INPUT_NAME in tensors:
        if len(tensors) > 1:
            others = [t for t in tensors if t != INPUT_NAME]
            raise BadRequest(f"Unknown input(s) next to {INPUT_NAME!r}: {some(others)}. {expected}")
        x = tensors[INPUT_NAME]
        if x.ndim != 2 or x.shape[1] != n:
            raise BadRequest(f"Input {INPUT_NAME!r} must have shape [N, {n}]; got {list(x.shape)}.")
    else:
        unknown = [t for t in tensors if t not in names]
        if unknown:
            raise BadRequest(f"Unknown input(s): {some(unknown)}. {expected}")
        missing = [f for f in names if f not in tensors]
        if missing:
            raise BadRequest(f"Missing input(s): {some(missing)}. {expected}")
        columns = []
        for feature in names:
            column = tensors[feature]
            if column.ndim not in (1, 2) or (column.ndim == 2 and column.shape[1] != 1):
                raise BadRequest(f"Input {feature!r} must have shape [N] or [N, 1]; got {list(column.shape)}.")
            columns.append(column.reshape(-1))
        rows = {len(c) for c in columns}
        if len(rows) != 1:
            raise BadRequest("Every feature input must hold the same number of rows.")
        x = np.column_stack(columns)
    if x.shape[0] == 0:
        raise BadRequest("The inputs hold no rows; send at least one.")
    return x


def _requested_outputs(header: Mapping[str, Any], model: Model) -> list[tuple[str, bool]]:
    """``(name, as_binary)`` per output asked for; ``predict`` when none are."""
    binary_default = (header.get("parameters") or {}).get("binary_data_output", False) is True
    available = ["predict"] + (["predict_proba"] if model.has_probabilities else [])
    wanted = []
    for output in header.get("outputs") or [{"name": "predict"}]:
        name = output["name"]
        if name not in available:
            raise BadRequest(f"Unknown output {name!r} for model {model.name!r}; it gives: {', '.join(available)}.")
        if any(name == seen for seen, _ in wanted):
            raise BadRequest(f"Output {name!r} is asked for twice.")
        binary = (output.get("parameters") or {}).get("binary_data", binary_default) is True
        wanted.append((name, binary))
    return wanted


def _output(name: str, prediction: Prediction) -> tuple[npt.NDArray[Any], str]:
    if name == "predict_proba":
        assert prediction.probabilities is not None
        return prediction.probabilities, "FP64"
    if prediction.classes is not None:
        return prediction.classes.astype(np.int64, copy=False), "INT64"
    assert prediction.values is not None
    return prediction.values, "FP64"
