"""When to micro-batch: the ``BATCHING`` setting, and the measurement ``auto`` decides by.

A scikit-learn ``predict`` call pays a fixed cost (input validation, Python
dispatch, one pass over every tree of a forest) that barely grows with the
number of rows; batching pays only when that fixed part dominates.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

_T = TypeVar("_T")

# should_batch defaults: a call must cost at least this much on its own...
MIN_CALL_COST_S = 0.5e-3
# ...and its fixed part must outweigh this many rows' worth of marginal cost.
MIN_CALL_TO_ROW_RATIO = 20.0
BATCHING_MODES = ("off", "on", "auto")
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MAX_LATENCY_MS = 2.0


@dataclass(frozen=True)
class BatchingSettings:
    """The ``BATCHING`` setting, parsed: a mode and the batcher's two limits."""

    mode: str = "off"
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_latency_ms: float = DEFAULT_MAX_LATENCY_MS

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | bool | None) -> BatchingSettings:
        """Read ``"off"``, ``"on"``, ``"auto"``, a bool, or ``{"mode": ..., "max_batch_size": ...,
        "max_latency_ms": ...}``; raise ``ValueError`` saying what is wrong otherwise."""
        if value is None or isinstance(value, bool):
            return cls("on" if value else "off")
        if isinstance(value, str):
            mode = value.strip().lower()
            if mode not in BATCHING_MODES:
                raise ValueError(f"BATCHING must be one of {', '.join(BATCHING_MODES)} or a mapping, not {value!r}")
            return cls(mode)
        if not isinstance(value, Mapping):
            raise ValueError(f"BATCHING must be a string or a mapping, not {type(value).__name__}")
        unknown = set(value) - {"mode", "max_batch_size", "max_latency_ms"}
        if unknown:
            raise ValueError(f"BATCHING has unknown key(s): {', '.join(sorted(unknown))}")
        settings = cls(
            cls.parse(value.get("mode", "on")).mode,
            value.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE),
            value.get("max_latency_ms", DEFAULT_MAX_LATENCY_MS),
        )
        size, latency = settings.max_batch_size, settings.max_latency_ms
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"BATCHING max_batch_size must be a positive integer, not {size!r}")
        if isinstance(latency, bool) or not isinstance(latency, int | float) or not 0 <= latency <= 1000:
            raise ValueError(f"BATCHING max_latency_ms must be a number from 0 to 1000, not {latency!r}")
        return settings

    @classmethod
    def mode_of(cls, config: Mapping[str, Any]) -> str:
        """The mode a checked config's ``BATCHING`` sets (``off``, ``on``, ``auto``): what servers size threads by."""
        try:
            return cls.parse(config.get("BATCHING", "off")).mode
        except ValueError:
            return "off"  # create_app has refused it already


@dataclass(frozen=True)
class CallCosts:
    """What one predict call costs: a fixed part and a part per row."""

    per_call_s: float
    per_row_s: float


def should_batch(
    cost_per_call_s: float,
    cost_per_row_s: float,
    *,
    min_call_s: float = MIN_CALL_COST_S,
    min_ratio: float = MIN_CALL_TO_ROW_RATIO,
) -> bool:
    """Decide whether ``BATCHING = "auto"`` turns the micro-batcher on.

    Batching saves one fixed call cost per merged request but adds two thread
    hand-offs (tens of microseconds under the GIL), so it only pays when the
    fixed cost is both large in absolute terms and large next to a row's.
    """
    if cost_per_call_s < min_call_s:
        return False
    if cost_per_row_s <= 0.0:
        return True
    return cost_per_call_s / cost_per_row_s >= min_ratio


def measure_call_costs(
    predict: Callable[[npt.NDArray[np.float64]], object],
    sample: npt.NDArray[np.float64],
    *,
    rows: int = 256,
    repeats: int = 5,
) -> CallCosts:
    """Time one-row and ``rows``-row calls on ``sample`` and split the cost.

    Medians of a few repeats keep one scheduler hiccup from deciding the
    policy; the fixed part is the one-row time less one row's marginal cost.
    """
    sample = np.asarray(sample, dtype=np.float64)
    if sample.ndim != 2 or sample.shape[0] == 0:
        raise ValueError("sample must be a non-empty 2-D array")
    rows = max(rows, 2)
    one = sample[:1]
    many = np.resize(sample, (rows, sample.shape[1]))
    predict(one)  # first call pays lazy imports and caches; not representative
    t_one = statistics.median(_timed(predict, one) for _ in range(repeats))
    t_many = statistics.median(_timed(predict, many) for _ in range(repeats))
    per_row = max((t_many - t_one) / (rows - 1), 0.0)
    return CallCosts(per_call_s=max(t_one - per_row, 0.0), per_row_s=per_row)


def _timed(fn: Callable[[_T], object], arg: _T) -> float:
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start
