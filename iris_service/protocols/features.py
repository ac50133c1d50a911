"""Protocol codecs: ``decode(body, model) -> Decoded`` and ``encode(prediction, model, decoded)``.

Each protocol (native ``/predict``, V1, V2, MLflow) differs only in how it
reads rows and writes answers; ``inference.run`` does the rest for all.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from weakref import WeakKeyDictionary

import numpy as np
import numpy.typing as npt
from flask import current_app, has_app_context

from ..errors import InvalidInput, IrisServiceError
from ..runtime import Model, Prediction
from ..schemas.fields import NamedRows, Rows


@dataclass(frozen=True)
class Decoded:
    """A request as the model sees it, plus what the codec needs to answer it."""

    x: npt.NDArray[np.float64]
    single: bool = False
    context: Mapping[str, Any] = field(default_factory=dict)


class Codec(Protocol):
    def decode(self, body: Any, model: Model) -> Decoded: ...

    def encode(self, prediction: Prediction, model: Model, decoded: Decoded) -> Any: ...


def to_matrix(rows: Rows, model: Model, location: tuple[str, ...], single: bool = False) -> npt.NDArray[np.float64]:
    """Order rows by the model's features, check their width, then their ranges (``check_ranges``).

    ``location`` is where errors are reported (``("json", "instances")``), so
    every protocol names the field and row the way its client sent them.
    """
    if isinstance(rows, NamedRows):
        return check_ranges(_named_to_matrix(rows, model, location, single), model, location, single)
    if rows.shape[1] != model.n_features:
        raise _invalid(
            location,
            f"Expected {model.n_features} features ({', '.join(model.feature_names)}), "
            f"got {rows.shape[1]}.",
        )
    return check_ranges(rows, model, location, single)


def _named_to_matrix(rows: NamedRows, model: Model, location: tuple[str, ...], single: bool) -> npt.NDArray[np.float64]:
    names = model.feature_names
    wanted = set(names)
    for i, row in enumerate(rows.rows):
        if row.keys() != wanted:
            missing = [n for n in names if n not in row]
            unknown = [k for k in row if k not in wanted]
            parts = []
            if missing:
                parts.append(f"missing feature(s): {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown feature(s): {', '.join(unknown)}")
            message = "; ".join(parts).capitalize() + f". Expected: {', '.join(names)}."
            raise _invalid(location if single else (*location, str(i)), message)
    return np.array([[row[n] for n in names] for row in rows.rows], dtype=np.float64)


def _invalid(location: tuple[str, ...], message: str) -> InvalidInput:
    errors: Any = [message]
    for key in reversed(location):
        errors = {key: errors}
    return InvalidInput(message, errors=errors)


#: ``app.extensions`` key of the per-app cache of each model's allowed ranges.
RANGES_KEY = "iris_input_ranges"


@dataclass(frozen=True)
class Ranges:
    """One model's allowed values per column; -inf/+inf where the manifest says null."""

    low: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    margin: float


def check_ranges(
    x: npt.NDArray[np.float64],
    model: Model,
    location: tuple[str, ...] = (),
    single: bool = False,
    error: type[IrisServiceError] = InvalidInput,
) -> npt.NDArray[np.float64]:
    """Refuse values outside the training range when ``INPUT_RANGE_POLICY`` is ``"reject"``.

    ``x`` is already ordered by the model's features. A model answers any
    finite number, but far outside its training data the answer is an
    extrapolation; services that would rather refuse than guess say so in the
    config. The first offending row is reported, every bad feature in it named
    with its allowed range. Protocols whose errors are 400s pass ``error``.
    """
    if not has_app_context():
        return x
    config = current_app.config
    if config.get("INPUT_RANGE_POLICY", "allow") != "reject":
        return x
    ranges = _ranges_for(model, float(config.get("INPUT_RANGE_MARGIN") or 0.0))
    outside = (x < ranges.low) | (x > ranges.high)
    if not outside.any():
        return x
    i = int(np.flatnonzero(outside.any(axis=1))[0])
    fields: dict[str, list[str]] = {}
    for j in np.flatnonzero(outside[i]).tolist():
        fields[model.feature_names[j]] = [_out_of_range(ranges, j, float(x[i, j]))]
    summary = "; ".join(f"{name}: {messages[0]}" for name, messages in fields.items())
    message = summary if single else f"Row {i}: {summary}"
    errors: Any = fields if single else {str(i): fields}
    for key in reversed(location):
        errors = {key: errors}
    raise error(message, errors=errors)


def _ranges_for(model: Model, margin: float) -> Ranges:
    """The model's bounds, computed once per model (and margin) and kept per app.

    Keyed weakly by the model object: a reload drops the old model's entry with it.
    """
    cache: WeakKeyDictionary[Any, Ranges] = current_app.extensions.setdefault(RANGES_KEY, WeakKeyDictionary())
    try:
        cached = cache.get(model)
    except TypeError:  # an unhashable model wrapper: compute every time rather than fail
        return _compute_ranges(model, margin)
    if cached is None or cached.margin != margin:
        cached = _compute_ranges(model, margin)
        cache[model] = cached
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
