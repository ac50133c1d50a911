"""In-process costs the HTTP numbers are compared with, timed in the same run.

The per-row loop is what a tutorial server pays per row (``model.predict``
on a one-row list); the floor is the least any JSON server can do for a
10,000-row batch: parse, convert, predict_proba, serialise. It is timed on
each body an HTTP batch is measured with (the native ``instances`` body and
the V2 tensor body), so each HTTP figure meets the floor of its own request.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson


@dataclass(frozen=True)
class InProcess:
    """Rows per second of the in-process baselines."""

    per_row_loop_rows_per_s: float
    floor_rows: int
    floor_rows_per_s: float
    floor_model: str
    floor_v2_rows_per_s: float | None = None


def per_row_loop(model: Any, rows: list[list[float]], budget_s: float) -> float:
    """Rows/s of ``model.predict([row])`` in a Python loop, for about ``budget_s``."""
    model.predict([rows[0]])
    done = 0
    start = time.perf_counter()
    deadline = start + budget_s
    while time.perf_counter() < deadline and done < 1_000_000:
        model.predict([rows[done % len(rows)]])
        done += 1
    return done / (time.perf_counter() - start)


def instances_matrix(document: Any) -> Any:
    """The rows of a native or V1 body: ``{"instances": [[...], ...]}``."""
    return np.asarray(document["instances"], dtype=np.float64)


def v2_matrix(document: Any) -> Any:
    """The rows of a V2 body: its first input tensor, flat data in its shape."""
    tensor = document["inputs"][0]
    return np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])


def batch_floor(
    model: Any, body: bytes, repeats: int, matrix: Callable[[Any], Any] = instances_matrix
) -> tuple[int, float]:
    """(rows, rows/s) of decode + asarray + predict_proba + encode on ``body``."""

    def once() -> int:
        x = matrix(orjson.loads(body))
        proba = model.predict_proba(x)
        orjson.dumps(
            {"predictions": proba.argmax(axis=1), "probabilities": proba},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        return len(x)

    rows = once()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return rows, rows / statistics.median(times)
