"""The data plane's explain path: the same decode, row limit and range policy as ``run``, then an explainer.

A request to explain is a request to predict first: the rows go through the
protocol's decoder, the row limit and the range policy exactly as
``DataPlane.run`` takes them (and a tree model's own, smaller row limit:
TreeSHAP's cost grows with the trees), the model predicts the class the
answer names, and ``runtime.explain`` computes the contributions. A model no explainer
supports is refused (501) before its body is read.
"""
from __future__ import annotations

from typing import Any, NamedTuple
from typing import Protocol as _Protocol

import numpy as np

from ..errors import IrisServiceError
from ..protocols import Decoded, Limits, Protocol, explanations
from ..runtime import Model, Prediction
from ..runtime.explain import explainer_for
from ..runtime.explanation import Explanation


class Checks(_Protocol):
    """What the explain path takes from the data plane: its row limit and its checks."""

    limits: Limits

    def check_rows(self, model: Model, x: Any, error: type[IrisServiceError], decoded: Decoded | None) -> None: ...


class ExplainResult(NamedTuple):
    """One answered explanation: the answer and what metrics and logs record about it."""

    model: Model
    rows: int
    prediction: Prediction
    explanation: Explanation
    answer: Any


def explain(plane: Checks, model: Model, body: Any, protocol: Protocol, *, named: bool = True) -> ExplainResult:
    """Decode, check, predict and explain one request for ``model`` in ``protocol``."""
    explainer = explainer_for(model)  # 501 for a model that cannot be explained, whatever the body
    decoded = protocol.decode(body, model, plane.limits)
    x = decoded.x
    plane.check_rows(model, x, protocol.INPUT_ERROR, decoded)
    if explainer.max_rows is not None and x.shape[0] > explainer.max_rows:
        raise protocol.INPUT_ERROR(
            f"At most {explainer.max_rows} rows per explanation of model {model.name!r} (its cost grows with "
            f"its trees); got {x.shape[0]}."
        )
    prediction = model.predict(x)
    explanation = explainer.explain(x)
    if not (np.isfinite(explanation.contributions).all() and np.isfinite(explanation.scores).all()):
        parts = explanation.contributions.reshape(len(x), -1)
        bad = np.flatnonzero(~(np.isfinite(parts).all(axis=1) & np.isfinite(explanation.scores).all(axis=1)))
        raise protocol.INPUT_ERROR(
            f"Row {int(bad[0])}: the values are too large for this model to give finite contributions."
        )
    answer = explanations.encode(prediction, explanation, model, decoded, named=named)
    return ExplainResult(model, int(x.shape[0]), prediction, explanation, answer)
