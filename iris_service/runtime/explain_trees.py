"""TreeSHAP for tree ensembles, from the ``shap`` library (the ``explain`` extra).

``feature_perturbation="tree_path_dependent"``: the expectation over the
training data is taken along the trees' own paths (each node's training
cover), so the SHAP values add up exactly to the model's raw output.
shap 0.51's interventional algorithm, given a background sample, does not:
on a bootstrapped forest of the Iris model its values missed
``predict_proba`` by up to 0.098, and brute-force Shapley values over the
same background disagreed with them. The stored background rows are still
what each explainer is checked on before it serves (``explain.explainer_for``).
``model_output="raw"`` is the probabilities of forests and single trees and
the decision function (log-odds) of gradient boosting.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import NotExplainable
from ..extras import needs
from .explanation import Explanation

#: Largest allowed gap between baseline + SHAP values and the model's raw output.
TOLERANCE = 1e-6
#: Rows x tree nodes one request may explain: TreeSHAP costs about 0.1 µs per row per node (1,000 Iris
#: rows of a 100-tree forest, 1,700 nodes: 0.15 s), so a request costs at most about two seconds of CPU.
WORK_BUDGET = 20_000_000


class TreeExplainer:
    """shap's TreeExplainer behind ``explain(x) -> Explanation``; one class per column of the answer."""

    method = "tree_path_dependent"

    def __init__(self, estimator: Any, output: str) -> None:
        import shap

        self.estimator = estimator
        self.output = output
        self._explainer = shap.TreeExplainer(estimator, feature_perturbation="tree_path_dependent",
                                             model_output="raw")
        expected = np.atleast_1d(np.asarray(self._explainer.expected_value, dtype=np.float64))
        self._binary = expected.shape[0] == 1
        self._baseline = np.concatenate([-expected, expected]) if self._binary else expected
        self._lock = threading.Lock()  # one shap call at a time per model: its C state is not documented as shared-safe
        #: How many rows one request may explain (``WORK_BUDGET``): a forest's trees multiply its cost.
        self.nodes = int(sum(len(tree.children_left) for tree in self._explainer.model.trees))
        self.max_rows: int | None = max(1, WORK_BUDGET // max(self.nodes, 1))

    def reference(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The model output that is explained, one column per class."""
        if self.output == "probability":
            return np.asarray(self.estimator.predict_proba(x), dtype=np.float64)
        scores = np.asarray(self.estimator.decision_function(x), dtype=np.float64)
        return np.column_stack([-scores, scores]) if scores.ndim == 1 else scores

    def explain(self, x: npt.NDArray[np.float64]) -> Explanation:
        with self._lock:
            values = np.asarray(self._explainer.shap_values(x, check_additivity=False), dtype=np.float64)
        if values.ndim == 2:  # one output column: the binary decision function
            values = np.stack([-values, values], axis=2)
        contributions = np.ascontiguousarray(values.transpose(0, 2, 1))  # (n, f, k) -> (n, k, f)
        return Explanation(self.reference(x), self._baseline, contributions, self.method, self.output)


def tree_explainer(estimator: Any) -> TreeExplainer | None:
    """A TreeSHAP explainer for a supported tree ensemble; None for any other estimator."""
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.tree import DecisionTreeClassifier

    if type(estimator) in (RandomForestClassifier, ExtraTreesClassifier, DecisionTreeClassifier):
        output = "probability"
    elif type(estimator) is HistGradientBoostingClassifier or (
        type(estimator) is GradientBoostingClassifier and estimator.estimators_.shape[1] == 1
    ):
        output = "decision_function"
    else:
        return None
    try:
        # Imported, not just looked up: an installed shap whose own imports fail (numba, a
        # half-removed install) must be the same one line as a missing one.
        import shap  # noqa: F401
    except ImportError:
        raise NotExplainable(needs(f"Explaining a {type(estimator).__name__}", "shap")) from None
    return TreeExplainer(estimator, output)
