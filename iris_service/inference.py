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
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    model = app.extensions[EXTENSION_KEY].get(name, version)
    span = app.extensions.get("iris_tracing_span") or _no_span
    g.model_name = model.name
    g.model_version = model.version
    with span("decode"):
        decoded = codec.decode(body, model)
    rows = decoded.x.shape[0]
    limit = app.config["MAX_BATCH_SIZE"]
    if rows > limit:
        raise InvalidInput(f"At most {limit} rows per request; got {rows}.")
    g.batch_size = rows
    with span("predict"):
        prediction = model.predict(decoded.x)
    g.prediction = prediction
    g.model = model
    with span("encode"):
        return codec.encode(prediction, model, decoded)


def _no_span(name: str) -> nullcontext[None]:
    return nullcontext()
