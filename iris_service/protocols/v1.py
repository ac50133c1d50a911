"""The V1 protocol (TensorFlow Serving REST / KServe V1): rows in, class indices out."""
from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ..runtime import Model, Prediction
from . import Decoded, Limits
from .features import to_matrix

#: The status of this protocol's input errors (its specification says 400).
INPUT_ERROR = BadRequest


def decode(body: dict[str, Any], model: Model, limits: Limits) -> Decoded:
    """Rows ordered by the model's features; a misfit is 400, as TF Serving and KServe answer."""
    key = "instances" if "instances" in body else "inputs"
    x = to_matrix(body[key], model, ("json", key), error=INPUT_ERROR)
    return Decoded(x, context={"columnar": key == "inputs"}, location=("json", key))


def encode(prediction: Prediction, model: Model, decoded: Decoded) -> dict[str, Any]:
    """``{"predictions": [...]}``, or ``{"outputs": [...]}`` for the columnar request.

    Classifiers answer class indices, as KServe's scikit-learn server does for
    the same request; regressors answer their values.
    """
    part = prediction.classes if prediction.classes is not None else prediction.values
    assert part is not None
    key = "outputs" if decoded.context.get("columnar") else "predictions"
    return {key: part.tolist()}
