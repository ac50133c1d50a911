"""In-process costs the HTTP numbers are compared with, timed in the same run.

The per-row loop is what a tutorial server pays per row (``model.predict``
on a one-row list); the floor is the least any JSON server can do for a
10,000-row batch: parse, convert, predict_proba, serialise.
"""

from __future__ import annotations

import statistics
import time
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


def batch_floor(model: Any, body: bytes, repeats: int) -> tuple[int, float]:
    """(rows, rows/s) of decode + asarray + predict_proba + encode on ``body``."""

    def once() -> int:
        x = np.asarray(orjson.loads(body)["instances"], dtype=np.float64)
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
