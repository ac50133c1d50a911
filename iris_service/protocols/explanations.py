"""The answer of ``/models/<name>/explain`` and V1 ``:explain``: one object per row, names listed once.

Per row: ``prediction`` (class index, the one ``/predict`` answers),
``label``, ``scores`` (the explained output, one per class) and
``contributions`` (one list per class, one value per feature, in the order
of ``classes`` and ``features``). ``baseline`` (one per class) is the same for
every row, so it is listed once beside ``method`` and ``output``. Lists rather
than objects keyed by name: a 1,000-row answer would otherwise build 3,000
dicts, and cost more than the explanation itself.
"""
from __future__ import annotations

from typing import Any

from ..runtime import Model, Prediction
from ..runtime.explanation import Explanation
from . import Decoded


def encode(prediction: Prediction, explanation: Explanation, model: Model, decoded: Decoded,
           *, named: bool = True) -> dict[str, Any]:
    """The answer for ``decoded``'s rows: one row's object for ``features``, else ``explanations``.

    ``named`` adds the model's name and version (the native answer; V1 answers do not name the model).
    """
    assert prediction.classes is not None
    names = model.class_names or ()
    classes = prediction.classes.tolist()
    rows = [
        {"prediction": c, "label": names[c], "scores": s, "contributions": parts}
        for c, s, parts in zip(classes, explanation.scores.tolist(), explanation.contributions.tolist(),
                               strict=True)
    ]
    answer: dict[str, Any] = rows[0] if decoded.single else {"explanations": rows}
    answer.update(
        method=explanation.method,
        output=explanation.output,
        classes=list(names),
        features=list(model.feature_names),
        baseline=explanation.baseline.tolist(),
    )
    if named:
        answer["model"] = model.name
        answer["version"] = model.version
    return answer
