"""``predict-file --explain``: one ``contribution_<feature>`` column per feature, for the predicted class.

The same explainers as ``POST /models/<name>/explain`` (``runtime.explain``):
exact contributions in a linear model's decision function space, TreeSHAP
for tree ensembles; each row's contributions plus the baseline give the
predicted class's score.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ..runtime import Model, Prediction
from ..runtime.explain import explainer_for

#: ``contribution_<feature>``, one column per feature after the prediction's columns.
CONTRIBUTION_PREFIX = "contribution_"


def contribution_names(model: Model) -> list[str]:
    return [CONTRIBUTION_PREFIX + name for name in model.feature_names]


def contribution_columns(x: npt.NDArray[np.float64], prediction: Prediction, model: Model) -> dict[str, Any]:
    """Each feature's contribution to the predicted class's score, one array per column."""
    assert prediction.classes is not None
    explanation = explainer_for(model).explain(x)
    picked = explanation.contributions[np.arange(len(x)), prediction.classes, :]
    return {name: picked[:, j] for j, name in enumerate(contribution_names(model))}
