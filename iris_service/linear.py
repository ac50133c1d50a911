"""An exact numpy path for logistic regression, checked against scikit-learn at load time.

``LogisticRegression.predict_proba`` on one row spends ~200 µs in input
validation and dispatch around a 4x3 matrix product; the same formulas in plain
numpy take a few microseconds. The path is only used after it reproduced
scikit-learn's classes exactly and its probabilities within ``TOLERANCE`` on a
sample of rows; any other estimator, or any disagreement, keeps scikit-learn.
Rows too large for that arithmetic to be exact (overflow, or rounding beyond
``TOLERANCE``) are scikit-learn's to answer, and an answer whose probabilities
are not finite is refused rather than served.
"""
from __future__ import annotations

import logging
import math
from math import hypot
from operator import mul
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import InvalidInput
from .runtime import Model, Prediction, SklearnModel

log = logging.getLogger(__name__)

#: Largest allowed difference to scikit-learn's probabilities on the check sample.
TOLERANCE = 1e-9
#: Random rows drawn for the load-time check, next to the range corners.
SAMPLE_ROWS = 512
#: Rounding allowed in a decision score summed in another order than scikit-learn's BLAS.
SCORE_ERROR = TOLERANCE / 10
#: Rows per batch in the load-time check (batches of ordinary rows take the numpy path).
CHECK_BATCH = 64
_SEED = 20240607
_MAX = float(np.finfo(np.float64).max)
_TINY = 5e-324
#: Magnitudes of the check's extreme rows: from subnormal, across the fast path's
#: limits (about 1e4 for iris), to where products and sums overflow.
_EXTREMES = (_TINY, 1e3, 1e4, 1e5, 1e6, 1e15, 1e30, 1e100, 1e154, 1e200, 1e300, 1e308, _MAX)


class LinearModel(SklearnModel):
    """A ``LogisticRegression`` evaluated with numpy, as scikit-learn 1.9 does.

    Binary: ``expit`` of the decision function, stacked as ``[1 - p, p]``
    (``LinearClassifierMixin._predict_proba_lr``). More classes: the softmax of
    the decision function after subtracting each row's maximum
    (``sklearn.utils.extmath.softmax``). Same operations in the same order, so
    the results are bit-for-bit those of scikit-learn on the same BLAS.

    A single row is computed in plain Python floats instead: numpy costs about a
    microsecond per operation whatever the size, a dozen operations for one row,
    five times the arithmetic. Its sums may round differently from BLAS in the
    last bit, well inside ``TOLERANCE``; the load-time check covers both paths.

    Both paths only take rows within ``exact_limits``: beyond them a product or
    sum could overflow (where scikit-learn's BLAS, with its own order and FMA,
    may not, or may differently), or round by more than ``TOLERANCE`` allows. A
    larger row, or a batch holding one, is answered by scikit-learn itself on the
    same array, so it is scikit-learn's answer bit for bit, and refused with
    ``InvalidInput`` when those probabilities are not finite.
    """

    def __init__(self, estimator: Any, manifest: Any) -> None:
        super().__init__(estimator, manifest)
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        self._coef_t = np.ascontiguousarray(coef.T)
        self._intercept = np.asarray(estimator.intercept_, dtype=np.float64)
        self._binary = len(self._classes) <= 2
        self._row_coef = coef.tolist()
        self._row_intercept = self._intercept.tolist()
        self._norm_limit, self._value_limit = exact_limits(coef, self._intercept)
        if self._binary:
            from scipy.special import expit  # scipy comes with scikit-learn

            self._expit = expit

    def predict(self, x: npt.NDArray[np.float64]) -> Prediction:
        if x.shape[0] == 1:
            row = x[0].tolist()
            # The one check on the one-row path: hypot is a single C call that
            # never raises (a norm beyond float64 is inf, and inf fails the comparison).
            if hypot(*row) <= self._norm_limit:
                return self._predict_row(row)
            return self._scikit_learn(x)
        # Two reductions without a temporary; a NaN would fail them too.
        if x.size and not (x.max() <= self._value_limit and -x.min() <= self._value_limit):
            return self._scikit_learn(x)
        scores = x @ self._coef_t + self._intercept
        if self._binary:
            positive = self._expit(scores[:, 0])
            proba = np.stack([1 - positive, positive], axis=1)
        else:
            scores -= scores.max(axis=1).reshape(-1, 1)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=1).reshape(-1, 1)
            proba = scores
        return Prediction(classes=proba.argmax(axis=1), probabilities=proba)

    def _predict_row(self, row: list[float]) -> Prediction:
        coef_and_intercept = zip(self._row_coef, self._row_intercept, strict=True)
        scores = [math.fsum(map(mul, weights, row)) + b for weights, b in coef_and_intercept]
        if self._binary:
            score = scores[0]
            # expit without overflow: exp() only ever sees a non-positive argument.
            if score >= 0:
                positive = 1.0 / (1.0 + math.exp(-score))
            else:
                e = math.exp(score)
                positive = e / (1.0 + e)
            proba = [1.0 - positive, positive]
        else:
            top = max(scores)
            exps = [math.exp(score - top) for score in scores]
            total = sum(exps)
            proba = [e / total for e in exps]
        # list.index(max) is numpy's argmax: the first of equal maxima.
        return Prediction(classes=np.array([proba.index(max(proba))]), probabilities=np.array([proba]))

    def _scikit_learn(self, x: npt.NDArray[np.float64]) -> Prediction:
        """scikit-learn's own answer on ``x``, refused when its probabilities are not finite.

        The whole array goes, not just its large rows: where BLAS overflows
        depends on the kernel it picks for the array's shape, so only the same
        call gives the same answer.
        """
        with np.errstate(all="ignore"):  # its overflows are judged by their result, below
            answer = super().predict(x)
        assert answer.probabilities is not None
        finite_probabilities(answer.probabilities)
        return answer


def finite_probabilities(probabilities: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``probabilities`` (rows by classes) if all are finite; else ``InvalidInput`` naming the first bad row.

    scikit-learn answers NaN for some finite rows: two decision scores overflow
    to opposite infinities and its softmax subtracts them (``inf - inf``), or the
    matrix product itself meets ``inf - inf``. JSON has no NaN, so such an answer
    would go out as nulls next to a class argmax picked from NaN; a request the
    model cannot answer is refused like any other input that does not fit it.
    """
    finite = np.isfinite(probabilities)
    if finite.all():
        return probabilities
    row = int(np.flatnonzero(~finite.reshape(len(finite), -1).all(axis=1))[0])
    raise InvalidInput(f"Row {row}: the values are too large for this model to give finite probabilities.")


def exact_limits(coef: npt.NDArray[np.float64], intercept: npt.NDArray[np.float64]) -> tuple[float, float]:
    """The largest Euclidean norm, and largest ``|x_j|``, of a row the fast arithmetic may take.

    Within them ``sum |w_j x_j| + |b|``, and so every product, partial sum and
    decision score, stays below ``bound = SCORE_ERROR / ((n + 2) * eps)``:
    nothing overflows, and any summation order (BLAS with or without FMA: n + 1
    roundings; ``math.fsum`` and the intercept: three) lands within
    ``(n + 2) * eps / 2 * bound = SCORE_ERROR / 2`` of the exact score. Two
    paths' scores then differ by under ``SCORE_ERROR``, which moves a softmax or
    expit by under ``2 * SCORE_ERROR``, well inside ``TOLERANCE``. The sum is
    bounded by ``|w| |x|`` (Cauchy-Schwarz) for the norm limit and by
    ``sum |w_j| * max |x_j|`` for the value limit. For iris both are about 1e4.
    """
    n = coef.shape[1]
    bound = SCORE_ERROR / ((n + 2) * float(np.finfo(np.float64).eps))
    room = max(bound - float(np.max(np.abs(intercept), initial=0.0)), 0.0)
    norm = float(np.max(np.sqrt(np.sum(coef * coef, axis=1)), initial=0.0))
    total = float(np.max(np.sum(np.abs(coef), axis=1), initial=0.0))
    # All-zero weights: every product is zero, so any finite row is exact.
    return (room / norm if norm else math.inf), (room / total if total else math.inf)


def accelerate(model: Model) -> Model:
    """``model`` on the exact numpy path when it qualifies and agrees; else ``model``."""
    if type(model) is not SklearnModel or not _qualifies(model.estimator):
        return model
    try:
        fast = LinearModel(model.estimator, model.manifest)
        sample = check_sample(model)
        reason = disagreement(model, fast, sample)
    except Exception as exc:  # noqa: BLE001 - any surprise means: keep scikit-learn
        reason = f"{type(exc).__name__}: {exc}"
    if reason is not None:
        log.warning("model %s keeps scikit-learn: the numpy path %s", model.name, reason)
        return model
    log.info("model %s served by the exact numpy logistic path", model.name)
    return fast


def _qualifies(estimator: Any) -> bool:
    from sklearn.linear_model import LogisticRegression

    if not isinstance(estimator, LogisticRegression) or type(estimator).predict_proba is not (
        LogisticRegression.predict_proba
    ):
        return False
    coef = getattr(estimator, "coef_", None)
    classes = getattr(estimator, "classes_", None)
    # A sparse coef_ (after .sparsify()) or a missing fit is scikit-learn's business.
    return isinstance(coef, np.ndarray) and coef.ndim == 2 and classes is not None and len(classes) >= 2


def check_sample(model: Model) -> npt.NDArray[np.float64]:
    """Rows to compare both paths on: the range corners, uniform draws, far-out and extreme rows.

    The manifest's ``input_schema`` gives each feature's training range; without
    it the rows are standard normal draws. Far-out rows (ten times the range)
    exercise saturated probabilities, where rounding differences would show.
    Extreme rows (last, so the first batches stay ordinary) reach the ends of
    float64, where products and sums overflow or underflow: a fast path that
    answers them otherwise than scikit-learn is refused at load.
    """
    n = model.n_features
    low = np.zeros(n)
    high = np.ones(n)
    for j, spec in enumerate(model.manifest.input_schema[:n]):
        lo, hi = spec.get("min"), spec.get("max")
        if isinstance(lo, int | float) and isinstance(hi, int | float) and hi >= lo:
            low[j], high[j] = float(lo), float(hi)
    rng = np.random.default_rng(_SEED)
    span = np.maximum(high - low, 1e-3)
    uniform = low + rng.random((SAMPLE_ROWS, n)) * span
    corners = np.array([low, high, (low + high) / 2])
    far = (low + high) / 2 + rng.standard_normal((64, n)) * span * 10
    ordinary = [corners, uniform, far, rng.standard_normal((64, n))]
    return np.concatenate([*ordinary, _extreme_rows((low + high) / 2, rng)])


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


def disagreement(reference: Model, fast: Model, sample: npt.NDArray[np.float64]) -> str | None:
    """Why ``fast`` may not replace ``reference`` on ``sample`` (None when it may).

    Checked in batches of ``CHECK_BATCH`` rows, on the whole sample and row by
    row: a one-row request takes its own path, and the batches of ordinary rows
    take the numpy batch path (a batch holding an extreme row is scikit-learn's).
    Where scikit-learn's probabilities are not finite ``fast`` must refuse the
    input rather than answer it. scikit-learn's answer for a row can depend on
    the batch around it (BLAS kernels overflow differently), so a row the whole
    sample's answer does not match is compared with scikit-learn on that row alone.
    """
    n = len(sample)
    whole = _reference(reference, sample)
    for start in range(0, n, CHECK_BATCH):
        batch = sample[start : start + CHECK_BATCH]
        reason = _differs(_expected(_reference(reference, batch)), _answer(fast, batch))
        if reason is not None:
            return f"{reason} on rows {start}-{start + len(batch) - 1}"
    reason = _differs(_expected(whole), _answer(fast, sample))
    if reason is not None:
        return reason
    for i in range(n):
        row = sample[i : i + 1]
        got = _answer(fast, row)
        if _differs(_expected(whole, slice(i, i + 1)), got) is None:
            continue
        reason = _differs(_expected(_reference(reference, row)), got)
        if reason is not None:
            return f"{reason} on row {i}"
    return None


def _reference(model: Model, x: npt.NDArray[np.float64]) -> Prediction:
    """scikit-learn's answer, overflows and all (they are what the check is about)."""
    with np.errstate(all="ignore"):
        return model.predict(x)


def _expected(want: Prediction, rows: slice = slice(None)) -> Prediction | None:
    """``want`` on ``rows``, or None where a probability is not finite (the input must be refused)."""
    assert want.classes is not None and want.probabilities is not None
    proba = want.probabilities[rows]
    return Prediction(classes=want.classes[rows], probabilities=proba) if np.isfinite(proba).all() else None


def _answer(model: Model, x: npt.NDArray[np.float64]) -> Prediction | None:
    """``model``'s answer on ``x``; None when it refuses the input as too large."""
    try:
        return model.predict(x)
    except InvalidInput:
        return None


def _differs(want: Prediction | None, got: Prediction | None) -> str | None:
    """How ``got`` differs from ``want`` (None: refused both, or equal within ``TOLERANCE``)."""
    if want is None or got is None:
        if want is got:
            return None
        if got is None:
            return "refuses an input scikit-learn answers"
        return "answers where scikit-learn has no finite probabilities"
    assert got.classes is not None and got.probabilities is not None
    assert want.classes is not None and want.probabilities is not None
    if not np.array_equal(want.classes, got.classes):
        return "predicts other classes"
    gap = float(np.max(np.abs(want.probabilities - got.probabilities)))
    if not gap <= TOLERANCE:
        return f"differs by {gap:.3g} in probability"
    return None
