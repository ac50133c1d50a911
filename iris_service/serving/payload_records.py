"""A payload record: what the data plane answered (``Entry``) and the JSON line the file sink writes.

For the file sink the request thread formats a small answer's line itself (``Lines``), while
its arrays are still in the CPU's cache, and queues bytes: measured in-process, that cost
11 µs a row where queueing the entry for the writer thread to format 50 ms later cost 39 µs
(the writer met every array again cold, and freed them). Large batches and the HTTP sink's
CloudEvents are formatted by the writer thread, so a request never pays for a big one.
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

    Safe to share between threads: the second and its text are one tuple, replaced whole.
    """

    def __init__(self) -> None:
        self._now: tuple[int, str] = (-1, "")

    def __call__(self, t: float) -> str:
        second = int(t)
        micros = round((t - second) * 1e6)
        if micros == 1_000_000:
            second, micros = second + 1, 0
        known, text = self._now
        if second != known:
            text = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            self._now = (second, text)
        return f"{text}.{micros:06d}Z"


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


LINE_OPTIONS = JSON_OPTIONS | orjson.OPT_APPEND_NEWLINE


class Lines:
    """``record_of``'s JSON line, byte for byte, with each model's fixed parts encoded once.

    orjson's output is compact and keeps key order, so the record's parts encoded one by one
    and joined are the record encoded whole (tests/test_payload_records.py proves it over
    hypothesis's entries). A model's name, version and labels never change, so they are
    encoded once per model; a classifier with labels gets its predictions from them.
    Shared by request threads: a model's parts are one tuple, replaced whole.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or Clock()
        self._parts: tuple[Any, bytes, list[bytes] | None, bytes] = (None, b"", None, b"")

    def __call__(self, entry: Entry) -> bytes:
        return self.line(entry.request_id, entry.time, entry.model, entry.x, entry.prediction)

    def line(self, request_id: str, t: float, model: Model, x: Any, prediction: Prediction) -> bytes:
        parts = self._parts
        if parts[0] is not model:
            parts = self._parts = self._parts_of(model)
        _, middle, labels, classes_tail = parts
        classes = prediction.classes
        if labels is None or classes is None:
            outputs = orjson.dumps(outputs_of(Entry(request_id, t, model, x, prediction, 0)), option=JSON_OPTIONS)
        else:
            outputs = b'{"predictions":[' + b",".join([labels[c] for c in classes.tolist()]) + b"]"
            if prediction.probabilities is not None:
                outputs += b',"probabilities":' + orjson.dumps(json_array(prediction.probabilities),
                                                               option=JSON_OPTIONS) + classes_tail
            outputs += b"}"
        return b"".join((
            b'{"request_id":', orjson.dumps(request_id), b',"time":"', self._clock(t).encode(), b'"',
            middle, orjson.dumps(json_array(x), option=JSON_OPTIONS), b',"outputs":', outputs, b"}\n",
        ))

    @staticmethod
    def _parts_of(model: Model) -> tuple[Any, bytes, list[bytes] | None, bytes]:
        middle = b',"model":' + orjson.dumps(model.name) + b',"version":' + orjson.dumps(str(model.version)) + \
            b',"inputs":'
        names = model.class_names
        if not names:
            return model, middle, None, b""
        return model, middle, [orjson.dumps(name) for name in names], b',"classes":' + orjson.dumps(list(names))


#: From this many rows on, an array goes to orjson whole; below, ``tolist`` is cheaper than the copy.
_NUMPY_MIN_ROWS = 64


def json_array(values: Any) -> Any:
    """An array as orjson writes it (numbers, nested lists): contiguous for orjson, or a list when small."""
    if not isinstance(values, np.ndarray):
        return values
    if values.ndim == 0 or values.shape[0] < _NUMPY_MIN_ROWS:
        return values.tolist()
    return np.ascontiguousarray(values)
