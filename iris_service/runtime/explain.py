"""Explanations: each feature's contribution to each class's score, for linear models and tree ensembles.

``explainer_for(model)`` finds the explainer a served model supports, builds it
once per loaded model (cached weakly, like the range policy's bounds) and
refuses everything else with a 501 naming what is supported. Linear models are
explained exactly in their decision function's space (``LinearExplainer``);
tree ensembles by TreeSHAP from the ``shap`` library (``explain_trees``). An
explainer serves only after its contributions added up to the model's own
output on the background rows stored at train or register time (1e-9 linear,
1e-6 trees), as fast paths must agree with scikit-learn before they serve.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt

from ..artifacts.background import background, feature_means
from ..errors import NotExplainable
from .explanation import Explainer, Explanation
from .prediction import Model

#: What a 501 lists as explainable.
SUPPORTED = (
    "linear classifiers with coef_ and intercept_ (LogisticRegression, LinearSVC, SGDClassifier, "
    "RidgeClassifier, Perceptron...), alone or after StandardScaler, MinMaxScaler, MaxAbsScaler or "
    "RobustScaler in a Pipeline; and tree ensembles (RandomForestClassifier, ExtraTreesClassifier, "
    "DecisionTreeClassifier, two-class GradientBoostingClassifier, HistGradientBoostingClassifier)"
)
#: Largest allowed gap between baseline + contributions and the model's output on the background rows.
LINEAR_TOLERANCE = 1e-9


class LinearExplainer:
    """Exact contributions ``coef * (t(x) - t(mean))`` of a linear classifier, ``t`` its scalers.

    A scaler before the classifier changes the space the coefficients live in,
    so contributions are measured there: ``t`` applies the pipeline's scalers,
    which map each feature on its own (one contribution per input feature), and
    the baseline ``intercept + coef . t(mean)`` is the decision function at the
    training mean. Their sum is the decision function, up to rounding.
    """

    method = "linear"
    output = "decision_function"
    max_rows = None  # a matrix product: the data plane's row limit is enough

    def __init__(self, scalers: list[Any], classifier: Any, means: npt.NDArray[np.float64]) -> None:
        coef = np.asarray(classifier.coef_, dtype=np.float64)
        intercept = np.broadcast_to(np.asarray(classifier.intercept_, dtype=np.float64), (coef.shape[0],))
        self._scalers = scalers
        self._binary = coef.shape[0] == 1
        # A binary model's one row of weights becomes two classes: -d for class 0, d for class 1.
        self._coef = np.vstack([-coef, coef]) if self._binary else coef
        self._coef_t = np.ascontiguousarray(self._coef.T)
        self._intercept = np.concatenate([-intercept, intercept]) if self._binary else intercept.copy()
        self._mean = self._transform(means.reshape(1, -1))[0]
        self._baseline = self._coef @ self._mean + self._intercept

    def _transform(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        for scaler in self._scalers:
            x = np.asarray(scaler.transform(x), dtype=np.float64)
        return x

    def explain(self, x: npt.NDArray[np.float64]) -> Explanation:
        import sklearn

        # Huge finite rows may overflow: the data plane refuses a non-finite answer, so no warning here.
        with sklearn.config_context(assume_finite=True), np.errstate(all="ignore"):
            t = self._transform(x)
            scores = t @ self._coef_t + self._intercept
            contributions = self._coef[np.newaxis, :, :] * (t - self._mean)[:, np.newaxis, :]
        return Explanation(scores, self._baseline, contributions, self.method, self.output)


def explainer_for(model: Model) -> Explainer:
    """The explainer of a served model, built on first use; ``NotExplainable`` (501) says why there is none."""
    inner = getattr(model, "model", model)  # a micro-batched model explains as the model it wraps
    with _LOCK:
        found = _CACHE.get(inner)
    if found is None:
        try:
            found = _build(inner)
        except NotExplainable as exc:
            found = exc.message
        with _LOCK:
            _CACHE[inner] = found
    if isinstance(found, str):
        raise NotExplainable(found)
    return found


_CACHE: weakref.WeakKeyDictionary[Any, Explainer | str] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _build(model: Any) -> Explainer:
    label = f"Model {model.name!r} {model.version}"
    estimator = getattr(model, "estimator", None)
    if estimator is None:
        fmt = model.manifest.format
        raise NotExplainable(
            f"{label} is served from {'an' if fmt[:1] in 'aeiou' else 'a'} {fmt} artifact: explanations need its "
            "scikit-learn estimator (serve the joblib or skops artifact)."
        )
    if not model.is_classifier:
        raise NotExplainable(f"{label} is a regressor; explanations are computed for {SUPPORTED}.")
    means, rows = feature_means(model.manifest), background(model.manifest)
    if means is None or rows is None:
        raise NotExplainable(
            f"{label} has no explanation data in its manifest: train it with 'iris-service train', or "
            "register it again with --background FILE (a CSV of training rows)."
        )
    linear = _linear_parts(estimator)
    if linear is not None:
        explainer: Explainer = LinearExplainer(*linear, means)
        reference = _linear_scores(estimator, rows)
        tolerance = LINEAR_TOLERANCE
    else:
        from .explain_trees import TOLERANCE, tree_explainer

        built = tree_explainer(estimator)
        if built is None:
            raise NotExplainable(
                f"{label} is a {type(estimator).__name__}; explanations are computed for {SUPPORTED}."
            )
        explainer, reference, tolerance = built, built.reference(rows), TOLERANCE
    _check_additive(explainer, rows, reference, tolerance, label)
    return explainer


def _linear_parts(estimator: Any) -> tuple[list[Any], Any] | None:
    """The scalers and the linear classifier of ``estimator`` (None when it is not such a model)."""
    from sklearn.linear_model._base import LinearClassifierMixin
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

    scalers: list[Any] = []
    final = estimator
    if isinstance(estimator, Pipeline):
        *steps, final = [step for _, step in estimator.steps]
        for step in steps:
            if step is None or step == "passthrough":
                continue
            if type(step) not in (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler):
                return None
            scalers.append(step)
    if not isinstance(final, LinearClassifierMixin) or (
        type(final).decision_function is not LinearClassifierMixin.decision_function
    ):
        return None
    coef = getattr(final, "coef_", None)
    if not isinstance(coef, np.ndarray) or coef.ndim != 2:  # a sparsified coef_ is not handled
        return None
    return scalers, final


def _linear_scores(estimator: Any, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    scores = np.asarray(estimator.decision_function(x), dtype=np.float64)
    return np.column_stack([-scores, scores]) if scores.ndim == 1 else scores


def _check_additive(
    explainer: Explainer, rows: npt.NDArray[np.float64], reference: npt.NDArray[np.float64], tolerance: float,
    label: str,
) -> None:
    """Baseline plus contributions must give the model's own output on the stored rows, or nothing serves."""
    found = explainer.explain(rows)
    total = found.baseline + found.contributions.sum(axis=2)
    gap = float(np.max(np.abs(total - reference), initial=0.0))
    if not gap <= tolerance or found.scores.shape != reference.shape:
        raise NotExplainable(
            f"{label}: its {found.method} explanations did not add up to the model's output on the stored "
            f"background rows (largest gap {gap:.3g}, allowed {tolerance:g})."
        )
