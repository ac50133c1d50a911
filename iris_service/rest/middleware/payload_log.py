"""Payload logs for REST: each answered inference's rows and prediction, under the request's id.

``state.infer`` and the row lane call its ``record`` right after the data plane answered, with the
``InferResult`` it already holds: no extra request hook, and nothing at all
when ``PAYLOAD_LOG`` is off. The record holds what the model saw and said, never a header, a
query string or a key (``serving/payload_records.record_of``).
"""
from __future__ import annotations

from flask import Flask

from ...serving.payload_log import PayloadLog, PayloadLogSettings, dropped_counter
from ..state import state_of


class PayloadLogging:
    """Flask extension: with ``PAYLOAD_LOG`` set, record each answered inference; off, add nothing."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Create the log and its counter (after ``Metrics``, whose registry it joins); no thread yet."""
        settings = PayloadLogSettings.from_config(app.config)
        if settings is None:
            return
        state = state_of(app)
        registry = getattr(state.metrics, "registry", None)  # None: METRICS_ENABLED is off
        dropped = dropped_counter(registry) if registry is not None else None
        state.payload_log = PayloadLog(settings, dropped)
