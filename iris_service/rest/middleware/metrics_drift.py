"""Series computed when ``/metrics`` is scraped: model readiness and drift of served values.

Read from the data plane at scrape time, not counted per request: the data
plane's drift monitor keeps the counts in numpy (``serving/drift.py``) and the
collector turns them into Prometheus families here. Each feature's histogram
has that feature's training deciles as its buckets, which prometheus-client's
``Histogram`` (one bucket list per metric) cannot express; a collector can.

Under several workers (``PROMETHEUS_MULTIPROC_DIR``) a scrape reaches one
worker, so each worker writes its drift series into prometheus-client's
per-process files instead (``metrics_drift_files``), and this collector adds
only readiness, the answering worker's (every worker loads the same models).
"""
from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from ...errors import IrisServiceError
from ..state import EXTENSION_KEY

FEATURE_LABELS = ("model", "version", "feature")


class ScrapeSeries:
    """A prometheus-client collector over one app's data plane."""

    def __init__(self, app: Flask, multiprocess: bool) -> None:
        self._app = weakref.ref(app)  # the app holds the registry that holds this
        self._multiprocess = multiprocess

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        app = self._app()
        plane = getattr(app.extensions.get(EXTENSION_KEY), "dataplane", None) if app is not None else None
        if plane is None:
            return
        ready = GaugeMetricFamily("iris_model_ready", "1 when the model is loaded and served, else 0.",
                                  labels=("model", "version"))
        psi = GaugeMetricFamily("iris_feature_psi", "Population stability index of the last DRIFT_WINDOW "
                                "served values against the training deciles.", labels=FEATURE_LABELS)
        values = HistogramMetricFamily("iris_feature_value", "Served values, bucketed by the training deciles.",
                                       labels=FEATURE_LABELS)
        outside = CounterMetricFamily("iris_feature_out_of_range", "Served values outside the training min and max.",
                                      labels=FEATURE_LABELS)
        for name, status in plane.status().items():
            ready.add_metric((name, status["version"] or ""), 1.0 if status["state"] == "READY" else 0.0)
            tracker = _tracker(plane, name) if not self._multiprocess else None
            if tracker is None:
                continue
            snapshot = tracker.snapshot()
            for feature in snapshot.features:
                labels = (snapshot.model, snapshot.version, feature.name)
                if feature.psi is not None:
                    psi.add_metric(labels, feature.psi)
                values.add_metric(labels, [(_bound(le), count) for le, count in feature.buckets], feature.total)
                outside.add_metric(labels, feature.out_of_range)
        families = (ready,) if self._multiprocess else (ready, psi, values, outside)
        yield from (family for family in families if family.samples)  # no HELP lines for nothing


def _tracker(plane: Any, name: str) -> Any:
    try:
        return plane.drift.tracker(plane.model(name))
    except IrisServiceError:  # not loaded: nothing to track
        return None


def _bound(value: float) -> str:
    """A bucket's ``le`` as Prometheus writes it: ``+Inf``, else the shortest round-trip float."""
    return "+Inf" if value == float("inf") else repr(float(value))


def register_scrape_series(registry: CollectorRegistry, app: Flask, multiprocess: bool) -> None:
    """Add the readiness and drift series to the registry ``/metrics`` encodes."""
    registry.register(ScrapeSeries(app, multiprocess))
    if multiprocess:
        from .metrics_drift_files import start_drift_files

        start_drift_files(app)
