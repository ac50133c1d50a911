"""The one equivalence check: rows to try, and how far a candidate runtime's answers are from the reference.

Every fast or converted path (the numpy logistic path, an ONNX export) is used
only after it gave the reference's classes on every sample row and
probabilities within its tolerance; the micro-batcher's ``auto`` mode times
its calls on the same rows.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..artifacts import Manifest
from .prediction import Model, Prediction

#: Uniform draws within the training ranges, next to the range corners.
UNIFORM_ROWS = 512
#: Rows far outside the ranges (ten times their width): saturated probabilities.
FAR_ROWS = 64
IRIS_DATASET = "sklearn.datasets.load_iris"


@dataclass(frozen=True)
class Sample:
    """Rows to compare runtimes on, and a phrase saying where they came from."""

    x: npt.NDArray[np.float64]
    description: str


def ranges_of(manifest: Manifest) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], int]:
    """Each feature's training (low, high) from the manifest, [0, 1] where unknown, and how many were known."""
    n = manifest.n_features
    low, high = np.zeros(n), np.ones(n)
    known = {f.get("name"): f for f in manifest.input_schema}
    found = 0
    for j, name in enumerate(manifest.feature_names):
        lo, hi = known.get(name, {}).get("min"), known.get(name, {}).get("max")
        if isinstance(lo, int | float) and isinstance(hi, int | float) and hi >= lo:
            low[j], high[j] = float(lo), float(hi)
            found += 1
    return low, high, found


def stress_sample(manifest: Manifest, seed: int = 20240607, extreme: bool = False) -> npt.NDArray[np.float64]:
    """Corners and middle of the ranges, uniform draws, far-out rows, standard normal rows (and extreme rows).

    Far-out rows exercise saturated probabilities, where rounding differences
    between two implementations of the same formula would show. ``extreme`` adds
    rows at the ends of float64 (last, so the first batches stay ordinary), where
    products and sums overflow or underflow: a float64 path answering them
    otherwise than its reference is refused. float32 runtimes (ONNX) cannot take them.
    """
    n = manifest.n_features
    low, high, _ = ranges_of(manifest)
    rng = np.random.default_rng(seed)
    span = np.maximum(high - low, 1e-3)
    uniform = low + rng.random((UNIFORM_ROWS, n)) * span
    corners = np.array([low, high, (low + high) / 2])
    far = (low + high) / 2 + rng.standard_normal((FAR_ROWS, n)) * span * 10
    ordinary = [corners, uniform, far, rng.standard_normal((FAR_ROWS, n))]
    return np.concatenate(ordinary + ([_extreme_rows((low + high) / 2, rng)] if extreme else []))


_MAX = float(np.finfo(np.float64).max)
_TINY = 5e-324
#: Magnitudes of the extreme rows: from subnormal, across a fast path's exact limits
#: (about 1e4 for iris), to where products and sums overflow.
_EXTREMES = (_TINY, 1e3, 1e4, 1e5, 1e6, 1e15, 1e30, 1e100, 1e154, 1e200, 1e300, 1e308, _MAX)


def _extreme_rows(middle: npt.NDArray[np.float64], rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Rows at the ends of float64, where products and sums overflow, underflow or cancel.

    Zeros; each magnitude of ``_EXTREMES`` in every feature, with equal,
    alternating and random signs; and one extreme feature among ordinary ones,
    where a single product overflows.
    """
    n = len(middle)
    alternating = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    signs = np.concatenate([np.ones((1, n)), alternating[None, :], rng.choice([-1.0, 1.0], size=(2, n))])
    rows = [np.zeros((1, n))]
    for value in _EXTREMES:
        rows += [signs * value, -signs * value]
    for value in (_TINY, 1e5, 1e308, _MAX):
        for sign in (1.0, -1.0):
            one = np.tile(middle, (n, 1))
            np.fill_diagonal(one, sign * value)
            rows.append(one)
    return np.concatenate(rows)


def training_sample(manifest: Manifest, rows: int = 1000, seed: int = 0) -> Sample:
    """The training data when it is known (Iris), else rows drawn within the recorded ranges.

    A registered model brings no data, so rows are uniform within the training
    ranges its manifest records, or standard normal where unknown.
    """
    if manifest.training.get("dataset") == IRIS_DATASET:
        from sklearn.datasets import load_iris

        return Sample(np.asarray(load_iris().data, dtype=np.float64), "iris data set")
    rng = np.random.default_rng(seed)
    low, high, found = ranges_of(manifest)
    known = {f.get("name"): f for f in manifest.input_schema}
    columns = []
    for j, name in enumerate(manifest.feature_names):
        item = known.get(name, {})
        if item.get("min") is not None and item.get("max") is not None:
            columns.append(rng.uniform(low[j], high[j], rows))
        else:
            columns.append(rng.standard_normal(rows))
    how = "uniform within training ranges" if found == manifest.n_features else (
        "standard normal" if found == 0 else "uniform within known ranges, standard normal elsewhere"
    )
    return Sample(np.column_stack(columns), f"{rows} rows, {how}")


@dataclass(frozen=True)
class Comparison:
    """How a candidate's answers differ from the reference's on one sample."""

    rows: int
    class_mismatches: int = 0
    first_mismatch: int | None = None
    same_outputs: bool = True
    worst: float = 0.0
    where: str = ""
    #: "candidate" or "reference": which one alone has a non-finite answer (which the data plane refuses).
    refused_by: str | None = None

    def agrees(self, tolerance: float) -> bool:
        return self.refused_by is None and self.same_outputs and not self.class_mismatches and self.worst <= tolerance

    def problem(self, tolerance: float) -> str | None:
        """Why the candidate may not replace the reference, in a few words (None when it may)."""
        if self.refused_by == "candidate":
            return f"has no finite answer where the reference has one{self.where}"
        if self.refused_by == "reference":
            return f"answers where the reference has no finite answer{self.where}"
        if self.class_mismatches or not self.same_outputs:
            return f"predicts other classes{self.where}"
        if not self.worst <= tolerance:
            return f"differs by {self.worst:.3g} in probability{self.where}"
        return None


def compare(
    reference: Model, candidate: Model, x: npt.NDArray[np.float64], *, relative_values: bool = False
) -> Comparison:
    """Compare two runtimes' answers on ``x`` in one batch.

    Classes must be equal; probabilities are compared absolutely, regression
    values relative to the largest output when ``relative_values`` (float32
    keeps ~7 digits, so a value of 150 cannot match to 1e-5 absolute).
    """
    return _difference(reference.predict(x), candidate.predict(x), relative_values)


def compare_rows(
    reference: Model, candidate: Model, x: npt.NDArray[np.float64], tolerance: float, batch: int = 64
) -> Comparison:
    """``compare`` in batches of ``batch`` rows, on all of ``x``, then row by row.

    A one-row request may take its own path and ordinary batches another, so all
    are tried. The reference's answer for a row can depend on the batch around it
    (BLAS kernels overflow differently), so a row that does not match the whole
    sample's answer is compared with the reference on that row alone. Returns
    the first comparison that disagrees (``where`` names its rows), else the
    whole sample's.
    """
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        result = compare(reference, candidate, chunk)
        if not result.agrees(tolerance):
            return dataclasses.replace(result, where=f" on rows {start}-{start + len(chunk) - 1}")
    want = reference.predict(x)
    whole = _difference(want, candidate.predict(x), False)
    if not whole.agrees(tolerance):
        return whole
    for i in range(len(x)):
        row = x[i : i + 1]
        got = candidate.predict(row)
        if _difference(_row(want, i), got, False).agrees(tolerance):
            continue
        alone = _difference(reference.predict(row), got, False)
        if not alone.agrees(tolerance):
            return dataclasses.replace(alone, where=f" on row {i}")
    return whole


def _row(prediction: Prediction, i: int) -> Prediction:
    parts = (prediction.classes, prediction.probabilities, prediction.values)
    return Prediction(*(None if part is None else part[i : i + 1] for part in parts))


def _difference(want: Prediction, got: Prediction, relative_values: bool) -> Comparison:
    """How ``got`` differs from ``want``; an answer with any non-finite number is one the data plane refuses."""
    rows = len(want)
    want_refused, got_refused = not _finite(want), not _finite(got)
    if want_refused or got_refused:
        refused_by = None if want_refused == got_refused else ("candidate" if got_refused else "reference")
        return Comparison(rows, refused_by=refused_by)
    mismatches, first = 0, None
    if want.classes is not None:
        if got.classes is None or got.classes.shape != want.classes.shape:
            return Comparison(rows, same_outputs=False)
        differ = np.flatnonzero(want.classes != got.classes)
        mismatches, first = int(differ.size), (int(differ[0]) if differ.size else None)
    worst = 0.0
    for a, b, relative in ((want.probabilities, got.probabilities, False), (want.values, got.values, relative_values)):
        if a is None:
            continue
        if b is None or a.shape != b.shape:
            return Comparison(rows, mismatches, first, same_outputs=False)
        diff = np.abs(a - b)
        if relative:
            diff = diff / max(1.0, float(np.max(np.abs(a))))
        worst = max(worst, float(np.max(diff)) if diff.size else 0.0)
    return Comparison(rows, mismatches, first, True, worst)


def _finite(prediction: Prediction) -> bool:
    return all(part is None or bool(np.isfinite(part).all()) for part in (prediction.probabilities, prediction.values))
