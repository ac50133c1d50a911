"""``run``: the one inference path every protocol blueprint shares.

Lookup, decode, predict, encode. A fix here fixes ``/predict``, V1, V2 and
MLflow at once; the codec is the only part that differs.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from flask import current_app, g

from .codecs import Codec
from .errors import InvalidInput
from .extensions import EXTENSION_KEY


def run(name: str | None, body: Any, codec: Codec, version: str | None = None) -> Any:
    """Answer one request for model ``name`` (the default model when None)."""
    # Proxies resolved once: each access through flask's g costs about a microsecond.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    ctx = g._get_current_object()
    model = app.extensions[EXTENSION_KEY].get(name, version)
    span = app.extensions.get("iris_tracing_span") or _no_span
    ctx.model_name = model.name
    ctx.model_version = model.version
    with span("decode"):
        decoded = codec.decode(body, model)
    rows = decoded.x.shape[0]
    limit = app.config["MAX_BATCH_SIZE"]
    if rows > limit:
        # Each protocol says which status its input errors take (V1/V2/MLflow: 400).
        raise getattr(codec, "INPUT_ERROR", InvalidInput)(f"At most {limit} rows per request; got {rows}.")
    ctx.batch_size = rows
    with span("predict"):
        try:
            prediction = model.predict(decoded.x)
        except InvalidInput as refused:
            # A runtime refusing values it cannot answer (linear.finite_probabilities)
            # answers with the protocol's input status, like the decoder's refusals.
            error = getattr(codec, "INPUT_ERROR", InvalidInput)
            raise error(refused.message, errors=refused.errors) from refused
    ctx.prediction = prediction
    ctx.model = model
    if rows == 1 and prediction.classes is not None and model.class_names:
        # The metrics count classes by name; for one row naming it is cheaper than numpy.
        ctx.predicted_classes = (model.class_names[int(prediction.classes[0])],)
    with span("encode"):
        return codec.encode(prediction, model, decoded)


def _no_span(name: str) -> nullcontext[None]:
    return nullcontext()
