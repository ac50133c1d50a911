"""``INPUT_RANGE_POLICY``: refuse values outside a model's training range, in every front-end.

A model answers any finite number, but far outside its training data the
answer is an extrapolation; services that would rather refuse than guess say
so in the config. The data plane applies it to every request and file chunk.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np
import numpy.typing as npt

from ..errors import IrisServiceError
from ..runtime import Model

ALLOW = "allow"
REJECT = "reject"


@dataclass(frozen=True)
class Ranges:
    """One model's allowed values per column; -inf/+inf where the manifest says null."""

    low: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    margin: float


class RangePolicy:
    """The policy and margin from the settings, and each model's bounds computed once.

    Bounds are keyed weakly by the model object: a reload drops the old model's entry with it.
    """

    def __init__(self, policy: str = ALLOW, margin: float = 0.0) -> None:
        self.rejects = policy == REJECT
        self.margin = margin
        self._cache: WeakKeyDictionary[Any, Ranges] = WeakKeyDictionary()

    def __dask_tokenize__(self) -> tuple[str, bool, float]:
        """Dask hashes task arguments: the policy is what it decides, not its cache."""
        return ("RangePolicy", self.rejects, self.margin)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to Dask workers) without the per-model cache, which holds weak references."""
        return {"rejects": self.rejects, "margin": self.margin}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.rejects, self.margin = state["rejects"], state["margin"]
        self._cache = WeakKeyDictionary()

    def check(
        self,
        x: npt.NDArray[np.float64],
        model: Model,
        error: type[IrisServiceError],
        location: tuple[str, ...] = (),
        single: bool = False,
    ) -> None:
        """Raise ``error`` for the first row with a value outside its feature's range (under ``reject``).

        ``x`` is already ordered by the model's features. Every bad feature of
        that row is named with its allowed range; ``location`` nests the field
        errors the way the client's protocol names them.
        """
        if not self.rejects:
            return
        i, fields = self.first_outside(x, model)
        if i is None:
            return
        summary = "; ".join(f"{name}: {message}" for name, message in fields.items())
        message = summary if single else f"Row {i}: {summary}"
        errors: Any = {k: [v] for k, v in fields.items()}
        if not single:
            errors = {str(i): errors}
        for key in reversed(location):
            errors = {key: errors}
        raise error(message, errors=errors)

    def outside(self, x: npt.NDArray[np.float64], model: Model) -> npt.NDArray[np.bool_]:
        """Per cell: is it outside its range? (All False under ``allow``.)"""
        if not self.rejects:
            return np.zeros(x.shape, dtype=bool)
        ranges = self._ranges_for(model)
        return (x < ranges.low) | (x > ranges.high)

    def first_outside(self, x: npt.NDArray[np.float64], model: Model) -> tuple[int | None, dict[str, str]]:
        """The first row with an out-of-range value and, per bad feature, what is allowed."""
        outside = self.outside(x, model)
        if not outside.any():
            return None, {}
        i = int(np.flatnonzero(outside.any(axis=1))[0])
        return i, self.describe_row(x[i], outside[i], model)

    def describe_row(
        self, row: npt.NDArray[np.float64], outside: npt.NDArray[np.bool_], model: Model
    ) -> dict[str, str]:
        ranges = self._ranges_for(model)
        return {model.feature_names[j]: _out_of_range(ranges, j, float(row[j])) for j in np.flatnonzero(outside)}

    def _ranges_for(self, model: Model) -> Ranges:
        try:
            cached = self._cache.get(model)
        except TypeError:  # an unhashable model wrapper: compute every time rather than fail
            return _compute_ranges(model, self.margin)
        if cached is None:
            cached = self._cache[model] = _compute_ranges(model, self.margin)
        return cached


def _compute_ranges(model: Model, margin: float) -> Ranges:
    """Bounds by feature name (not position), so a manifest listing them in another order still fits."""
    known = {item.get("name"): item for item in model.manifest.input_schema if isinstance(item, Mapping)}
    low = np.full(model.n_features, -np.inf)
    high = np.full(model.n_features, np.inf)
    for j, name in enumerate(model.feature_names):
        item = known.get(name, {})
        lo, hi = _bound(item.get("min")), _bound(item.get("max"))
        widen = margin * (hi - lo) if lo is not None and hi is not None else 0.0
        if lo is not None:
            low[j] = lo - widen
        if hi is not None:
            high[j] = hi + widen
    return Ranges(low, high, margin)


def _bound(value: Any) -> float | None:
    """A manifest's min or max as a float; None when unknown (null or not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if np.isfinite(value) else None


def _out_of_range(ranges: Ranges, j: int, value: float) -> str:
    """``Must be between 1.0 and 6.9 (the training range); got 500.`` for column ``j``."""
    lo, hi = float(ranges.low[j]), float(ranges.high[j])
    where = "the training range"
    if ranges.margin:
        where += f" widened by {ranges.margin * 100:.4g}% of its width"
    if np.isinf(lo):
        bounds = f"at most {_bound_text(hi)}"
    elif np.isinf(hi):
        bounds = f"at least {_bound_text(lo)}"
    else:
        bounds = f"between {_bound_text(lo)} and {_bound_text(hi)}"
    sent = str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    return f"Must be {bounds} ({where}); got {sent}."


def _bound_text(value: float) -> str:
    """Rounded to 10 places so a margin's arithmetic never prints ``0.41000000000000003``."""
    return repr(round(value, 10))
