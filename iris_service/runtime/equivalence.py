"""The one equivalence check: rows to try, and how far a candidate runtime's answers are from the reference.

Every fast or converted path (the numpy logistic path, an ONNX export) is used
only after it gave the reference's classes on every sample row and
probabilities within its tolerance; the micro-batcher's ``auto`` mode times
its calls on the same rows.
"""
from __future__ import annotations

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


def stress_sample(manifest: Manifest, seed: int = 20240607) -> npt.NDArray[np.float64]:
    """Corners and middle of the ranges, uniform draws, far-out rows and standard normal rows.

    Far-out rows exercise saturated probabilities, where rounding differences
    between two implementations of the same formula would show.
    """
    n = manifest.n_features
    low, high, _ = ranges_of(manifest)
    rng = np.random.default_rng(seed)
    span = np.maximum(high - low, 1e-3)
    uniform = low + rng.random((UNIFORM_ROWS, n)) * span
    corners = np.array([low, high, (low + high) / 2])
    far = (low + high) / 2 + rng.standard_normal((FAR_ROWS, n)) * span * 10
    return np.concatenate([corners, uniform, far, rng.standard_normal((FAR_ROWS, n))])


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

    def agrees(self, tolerance: float) -> bool:
        return self.same_outputs and not self.class_mismatches and self.worst <= tolerance


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
    reference: Model, candidate: Model, x: npt.NDArray[np.float64], tolerance: float
) -> Comparison:
    """``compare`` in one batch and then row by row (a one-row request may take its own path).

    The reference answers once, in a batch. Returns the batch's comparison if
    it already disagrees, else the first row that disagrees (``where`` names
    it), else the batch's.
    """
    want = reference.predict(x)
    whole = _difference(want, candidate.predict(x), False)
    if not whole.agrees(tolerance):
        return whole
    for i in range(len(x)):
        row = _difference(_row(want, i), candidate.predict(x[i : i + 1]), False)
        if not row.agrees(tolerance):
            return Comparison(1, row.class_mismatches, row.first_mismatch, row.same_outputs, row.worst, f" on row {i}")
    return whole


def _row(prediction: Prediction, i: int) -> Prediction:
    parts = (prediction.classes, prediction.probabilities, prediction.values)
    return Prediction(*(None if part is None else part[i : i + 1] for part in parts))


def _difference(want: Prediction, got: Prediction, relative_values: bool) -> Comparison:
    rows = len(want)
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
        gap = float(np.max(diff)) if diff.size else 0.0
        worst = max(worst, gap if gap == gap else float("inf"))  # NaN never agrees
    return Comparison(rows, mismatches, first, True, worst)
