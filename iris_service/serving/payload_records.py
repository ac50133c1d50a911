"""A payload record: what the request thread queues (``Entry``) and the JSON the sinks make of it.

Formatting happens in the writer thread only; the request thread just builds an ``Entry``
from what the data plane already holds.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, NamedTuple

import numpy as np
import orjson

from ..runtime import Model, Prediction

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class Entry(NamedTuple):
    """One answered request, as the request thread queued it: no copy, no formatting yet."""

    request_id: str
    time: float
    model: Model
    x: Any
    prediction: Prediction
    size: int


def rfc3339(t: float) -> str:
    """``2026-12-02T00:01:02.123456Z``: RFC 3339 in UTC, to the microsecond."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Clock:
    """``rfc3339`` with each second's text made once: formatting a datetime costs more than the record.

    One per sink, so one thread uses it (only the writer thread calls a sink).
    """

    def __init__(self) -> None:
        self._second, self._text = -1, ""

    def __call__(self, t: float) -> str:
        second = int(t)
        micros = round((t - second) * 1e6)
        if micros == 1_000_000:
            second, micros = second + 1, 0
        if second != self._second:
            self._second = second
            self._text = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._text}.{micros:06d}Z"


def outputs_of(entry: Entry) -> dict[str, Any]:
    """``predictions`` (class names, or a regressor's values), and ``probabilities`` with their ``classes``."""
    prediction, names = entry.prediction, entry.model.class_names
    outputs: dict[str, Any] = {}
    if prediction.classes is not None:
        classes = prediction.classes.tolist()
        outputs["predictions"] = [names[c] for c in classes] if names else classes
    elif prediction.values is not None:
        outputs["predictions"] = json_array(prediction.values)
    if prediction.probabilities is not None:
        outputs["probabilities"] = json_array(prediction.probabilities)
        if names:
            outputs["classes"] = names  # a tuple or list: orjson writes either as an array, no copy
    return outputs


def record_of(entry: Entry, clock: Any = rfc3339) -> dict[str, Any]:
    """The JSON-lines record: request id, time, model, version, inputs, outputs; never a header or key."""
    return {
        "request_id": entry.request_id,
        "time": clock(entry.time),
        "model": entry.model.name,
        "version": str(entry.model.version),
        "inputs": json_array(entry.x),
        "outputs": outputs_of(entry),
    }


#: From this many rows on, an array goes to orjson whole; below, ``tolist`` is cheaper than the copy.
_NUMPY_MIN_ROWS = 64


def json_array(values: Any) -> Any:
    """An array as orjson writes it (numbers, nested lists): contiguous for orjson, or a list when small."""
    if not isinstance(values, np.ndarray):
        return values
    if values.ndim == 0 or values.shape[0] < _NUMPY_MIN_ROWS:
        return values.tolist()
    return np.ascontiguousarray(values)
