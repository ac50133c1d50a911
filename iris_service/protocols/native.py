"""The native ``/predict`` protocol: the tutorial's request, richer answers."""
from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from ..errors import InvalidInput
from ..runtime import Model, Prediction
from . import Decoded, Limits
from .features import to_matrix

#: Natively, a body that parses but does not fit the model is a 422 (as webargs answers).
INPUT_ERROR = InvalidInput

#: From this many rows on, a batch's rows are written as JSON bytes directly.
FRAGMENT_MIN_ROWS = 64


def decode(body: dict[str, Any], model: Model, limits: Limits) -> Decoded:
    if "features" in body:
        location = ("json", "features")
        return Decoded(to_matrix(body["features"], model, location, single=True), single=True, location=location)
    location = ("json", "instances")
    return Decoded(to_matrix(body["instances"], model, location), location=location)


def encode(prediction: Prediction, model: Model, decoded: Decoded) -> dict[str, Any]:
    if decoded.single:
        answer = rows_of(prediction, model)[0]
    elif (
        len(prediction) >= FRAGMENT_MIN_ROWS
        and prediction.classes is not None
        and prediction.probabilities is not None
        and model.class_names
    ):
        answer = {"predictions": rows_fragment(prediction.classes, prediction.probabilities, model.class_names)}
    else:
        answer = {"predictions": rows_of(prediction, model)}
    answer["model"] = model.name
    answer["version"] = model.version
    return answer


def rows_of(prediction: Prediction, model: Model) -> list[dict[str, Any]]:
    """One ``{"prediction", "label", "probabilities"}`` object per row.

    Built from plain Python lists (``tolist``) and the model's precomputed
    class names: numpy scalars would cost a conversion per value.
    """
    if prediction.classes is None:
        assert prediction.values is not None
        return [{"prediction": v} for v in prediction.values.tolist()]
    names = model.class_names or ()
    classes = prediction.classes.tolist()
    if prediction.probabilities is None:
        return [{"prediction": c, "label": names[c]} for c in classes]
    return [
        {"prediction": c, "label": names[c], "probabilities": dict(zip(names, p, strict=True))}
        for c, p in zip(classes, prediction.probabilities.tolist(), strict=True)
    ]


def rows_fragment(
    classes: npt.NDArray[np.int64], probabilities: npt.NDArray[Any], names: tuple[str, ...]
) -> orjson.Fragment:
    """The JSON of ``rows_of`` for a large batch, byte for byte, without its dicts.

    Two dicts per row cost more than the prediction (and wake the garbage
    collector) on a 10,000-row batch. orjson writes a float64 array's numbers
    exactly as it writes the same Python floats, so the numbers are serialised
    in one call and spliced between constant per-class pieces with list slices.
    A row's closing ``}},`` and the next row's head are one piece, and the dump's
    own brackets are trimmed from its first and last number rather than copied off.
    """
    n, k = probabilities.shape
    numbers = orjson.dumps(
        np.ascontiguousarray(probabilities, dtype=np.float64).ravel(), option=orjson.OPT_SERIALIZE_NUMPY
    ).split(b",")
    keys = [orjson.dumps(name) + b":" for name in names]
    heads = [
        b"}},{" + orjson.dumps({"prediction": c, "label": name})[1:-1] + b',"probabilities":{' + keys[0]
        for c, name in enumerate(names)
    ]
    step = 2 * k
    parts: list[bytes] = [b""] * (n * step)
    parts[0::step] = [heads[c] for c in classes.tolist()]
    for j in range(k):
        parts[1 + 2 * j :: step] = numbers[j::k]
        if j + 1 < k:
            parts[2 + 2 * j :: step] = [b"," + keys[j + 1]] * n
    parts[0] = b"[{" + parts[0][4:]  # no row before the first
    parts[1] = parts[1][1:]  # the dump's "["
    parts[-1] = parts[-1][:-1] + b"}}]"  # the dump's "]"
    return orjson.Fragment(b"".join(parts))
