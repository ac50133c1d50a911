"""The native ``/predict`` protocol: the tutorial's request, richer answers."""
from __future__ import annotations

from typing import Any

from ..runtime import Model, Prediction
from . import Decoded, to_matrix


def decode(body: dict[str, Any], model: Model) -> Decoded:
    if "features" in body:
        return Decoded(to_matrix(body["features"], model, ("json", "features"), single=True), single=True)
    return Decoded(to_matrix(body["instances"], model, ("json", "instances")))


def encode(prediction: Prediction, model: Model, decoded: Decoded) -> dict[str, Any]:
    rows = rows_of(prediction, model)
    if decoded.single:
        answer = rows[0]
    else:
        answer = {"predictions": rows}
    answer["model"] = model.name
    answer["version"] = model.version
    return answer


def rows_of(prediction: Prediction, model: Model) -> list[dict[str, Any]]:
    """One ``{"prediction", "label", "probabilities"}`` object per row.

    Built from plain Python lists (``tolist``) and the model's precomputed
    class names: numpy scalars would cost a conversion per value.
    """
    if prediction.classes is None:
        assert prediction.values is not None
        return [{"prediction": v} for v in prediction.values.tolist()]
    names = model.class_names or ()
    classes = prediction.classes.tolist()
    if prediction.probabilities is None:
        return [{"prediction": c, "label": names[c]} for c in classes]
    return [
        {"prediction": c, "label": names[c], "probabilities": dict(zip(names, p))}
        for c, p in zip(classes, prediction.probabilities.tolist())
    ]
