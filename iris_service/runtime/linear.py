"""An exact numpy path for logistic regression, checked against scikit-learn at load time.

``LogisticRegression.predict_proba`` on one row spends ~200 µs in input
validation and dispatch around a 4x3 matrix product; the same formulas in plain
numpy take a few microseconds. The path is only used after it reproduced
scikit-learn's classes exactly and its probabilities within ``TOLERANCE`` on a
sample of rows; any other estimator, or any disagreement, keeps scikit-learn.
Rows too large for that arithmetic to be exact (overflow, or rounding beyond
``TOLERANCE``) are scikit-learn's to answer, so the answer is scikit-learn's
wherever it is not provably the same; an answer whose probabilities are not
finite is refused by the data plane, as for every runtime.
"""
from __future__ import annotations

import logging
import math
from math import hypot
from operator import mul
from typing import Any

import numpy as np
import numpy.typing as npt

from .equivalence import compare_rows, stress_sample
from .prediction import Model, Prediction
from .sklearn import SklearnModel

log = logging.getLogger("iris_service.linear")

#: Largest allowed difference to scikit-learn's probabilities on the check sample.
TOLERANCE = 1e-9
#: Rounding allowed in a decision score summed in another order than scikit-learn's BLAS.
SCORE_ERROR = TOLERANCE / 10
#: Rows per batch in the load-time check (batches of ordinary rows take the numpy path).
CHECK_BATCH = 64


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
    same array, so it is scikit-learn's answer bit for bit (NaN included, which
    the data plane refuses).
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
            scores -= _row_max(scores).reshape(-1, 1)
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
        """scikit-learn's own answer on ``x``.

        The whole array goes, not just its large rows: where BLAS overflows
        depends on the kernel it picks for the array's shape, so only the same
        call gives the same answer.
        """
        return super().predict(x)


def _row_max(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``scores.max(axis=1)``, column by column: the same values (a maximum does not round).

    numpy reduces the short last axis of an (n, classes) array row by row, about
    20 times slower on 10,000 rows than the few whole-column ``maximum`` calls.
    """
    top = scores[:, 0].copy()
    for j in range(1, scores.shape[1]):
        np.maximum(top, scores[:, j], out=top)
    return top


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
    """The rows both paths are compared on at load: ``equivalence.stress_sample`` with extreme rows."""
    return stress_sample(model.manifest, extreme=True)


def disagreement(reference: Model, fast: Model, sample: npt.NDArray[np.float64]) -> str | None:
    """Why ``fast`` may not replace ``reference`` on ``sample`` (None when it may).

    ``equivalence.compare_rows``: batches of ``CHECK_BATCH`` rows (ordinary ones
    take the numpy batch path), the whole sample, and every row alone (the
    one-row path); where scikit-learn has no finite answer, neither may ``fast``.
    """
    return compare_rows(reference, fast, sample, TOLERANCE, CHECK_BATCH).problem(TOLERANCE)
