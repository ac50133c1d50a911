"""Drift series under several workers: each worker writes its counts into prometheus-client's files.

With ``PROMETHEUS_MULTIPROC_DIR`` a scrape reaches one worker and reads every
worker's ``*.db`` files (``MultiProcessCollector``), so drift must be in those
files too. A daemon thread per worker writes its drift snapshot there once a
second when rows arrived (never in a request): the decile histogram and the
out-of-range counter as prometheus-client's own histogram and counter values,
which the collector sums over workers (a dead worker's counts stay, as for
every counter), and the PSI as a ``livemax`` gauge: the largest PSI of the live
workers' windows (each its last ``DRIFT_WINDOW`` rows), dropped with a dead
worker by ``gunicorn.conf.py``'s ``mark_process_dead``. Values are written
through ``prometheus_client.values.ValueClass``, the per-process store its
metrics use, because a histogram per feature with that feature's deciles as
buckets is not something its ``Histogram`` class can declare.
"""
from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from flask import Flask
from prometheus_client import values

from ...errors import IrisServiceError
from ...serving.drift import DriftSnapshot
from ..state import EXTENSION_KEY

FEATURE_LABELS = ("model", "version", "feature")
PUBLISH_SECONDS = 1.0
HELP = {
    "iris_feature_value": "Served values, bucketed by the training deciles.",
    "iris_feature_out_of_range": "Served values outside the training min and max.",
    "iris_feature_psi": "Population stability index of the last DRIFT_WINDOW served values against the training "
                        "deciles.",
}


class DriftFiles:
    """One worker's drift values in the multiprocess files, and the thread that writes them."""

    def __init__(self, app: Flask) -> None:
        self._app = weakref.ref(app)
        self._values: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._written: dict[tuple[str, str], int] = {}  # (model, version) -> rows count last written
        self._pid: int | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start this worker's writer once (after a fork, again: threads do not survive it)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._values.clear()
            self._written.clear()
            threading.Thread(target=self._run, name="iris-drift-metrics", daemon=True).start()

    def publish(self) -> None:
        """Write every tracked model's snapshot whose rows changed since the last write."""
        app = self._app()
        plane = getattr(app.extensions.get(EXTENSION_KEY), "dataplane", None) if app is not None else None
        if plane is None:
            return
        for name in plane.names():
            try:
                tracker = plane.drift.tracker(plane.model(name))
            except IrisServiceError:
                continue
            if tracker is None:
                continue
            snapshot = tracker.snapshot()
            key = (snapshot.model, snapshot.version)
            if self._written.get(key) != snapshot.count:
                self._write(snapshot)
                self._written[key] = snapshot.count

    def _run(self) -> None:
        stop = threading.Event()
        while self._app() is not None:
            self.publish()
            stop.wait(PUBLISH_SECONDS)

    def _write(self, snapshot: DriftSnapshot) -> None:
        for feature in snapshot.features:
            labels = (snapshot.model, snapshot.version, feature.name)
            below = 0
            for le, cumulative in feature.buckets:  # the files hold each bucket's own count
                bound = "+Inf" if le == float("inf") else repr(le)
                self._value("histogram", "iris_feature_value", "_bucket", labels, bound).set(cumulative - below)
                below = cumulative
            self._value("histogram", "iris_feature_value", "_sum", labels).set(feature.total)
            self._value("counter", "iris_feature_out_of_range", "_total", labels).set(feature.out_of_range)
            if feature.psi is not None:
                self._value("gauge", "iris_feature_psi", "", labels).set(feature.psi)

    def _value(self, kind: str, metric: str, suffix: str, labels: tuple[str, ...], le: str | None = None) -> Any:
        names = FEATURE_LABELS + (("le",) if le is not None else ())
        label_values = labels + ((le,) if le is not None else ())
        key = (metric + suffix, label_values)
        value = self._values.get(key)
        if value is None:
            mode = "livemax" if kind == "gauge" else ""
            value = self._values[key] = values.ValueClass(
                kind, metric, metric + suffix, names, label_values, HELP[metric], multiprocess_mode=mode)
        return value


def start_drift_files(app: Flask) -> DriftFiles:
    """Write this app's drift into the multiprocess files from the worker's first request on."""
    files = DriftFiles(app)
    app.before_request(files.start)  # a pid comparison per request; the thread starts in the worker
    return files
