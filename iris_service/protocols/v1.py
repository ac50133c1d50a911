"""The V1 protocol (TensorFlow Serving REST / KServe V1): rows in, class indices out."""
from __future__ import annotations

from typing import Any

from ..errors import BadRequest, InvalidInput
from ..runtime import Model, Prediction
from . import Decoded, to_matrix

#: The status of this protocol's input errors (its specification says 400).
INPUT_ERROR = BadRequest


def decode(body: dict[str, Any], model: Model) -> Decoded:
    """Rows ordered by the model's features; a misfit is 400, as TF Serving and KServe answer."""
    key = "instances" if "instances" in body else "inputs"
    try:
        x = to_matrix(body[key], model, ("json", key))
    except InvalidInput as exc:
        raise BadRequest(exc.message, errors=exc.errors) from None
    return Decoded(x, context={"columnar": key == "inputs"})


def encode(prediction: Prediction, model: Model, decoded: Decoded) -> dict[str, Any]:
    """``{"predictions": [...]}``, or ``{"outputs": [...]}`` for the columnar request.

    Classifiers answer class indices, as KServe's scikit-learn server does for
    the same request; regressors answer their values.
    """
    part = prediction.classes if prediction.classes is not None else prediction.values
    assert part is not None
    key = "outputs" if decoded.context.get("columnar") else "predictions"
    return {key: part.tolist()}
