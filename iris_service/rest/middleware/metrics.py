"""Per-app Prometheus metrics and the ``GET /metrics`` scrape endpoint.

Each app gets its own ``CollectorRegistry`` so that two apps in one process (the test
suite builds many) never collide on metric names. Under gunicorn with several workers,
``PROMETHEUS_MULTIPROC_DIR`` switches prometheus-client to its multiprocess mode and the
scrape aggregates every worker's files (``gunicorn.conf.py`` and ``iris-service serve``
prepare the directory; dead workers' live gauges are dropped: ``metrics_multiproc``).
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    multiprocess,
)
from prometheus_client.exposition import choose_encoder

from ..state import EXTENSION_KEY, noted_result, state_of
from .metrics_drift import register_scrape_series
from .metrics_multiproc import drop_dead
from .metrics_series import known_routes, loaded_classes

SCRAPE_ENDPOINT = "iris_metrics.scrape"

# Inference on a small sklearn model takes well under a millisecond; the low buckets
# matter, the high ones catch a stalled worker.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)

# The method label is bounded: a client can send any token as a method.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Label for requests that matched no route (404, 405): the raw path would be unbounded.
UNMATCHED_ENDPOINT = "<unmatched>"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_START = "_iris_metrics_start"
_IN_FLIGHT = "_iris_metrics_in_flight"

blp = Blueprint("iris_metrics", __name__)


@blp.get("/metrics")
def scrape() -> Response:
    """Prometheus metrics in the text (or OpenMetrics) exposition format."""
    return current_app.extensions[EXTENSION_KEY].metrics.render(request.headers.get("Accept", ""))


def multiprocess_dir() -> str | None:
    """The multiprocess directory prometheus-client itself uses, if any.

    prometheus-client picks its value class from this variable when first imported,
    so the app must follow the same variable rather than a config key of its own.
    """
    return os.environ.get(MULTIPROC_ENV) or None


class AppMetrics:
    """The metric objects and request hooks of one app.

    Kept in the app state's ``metrics``; the model store's load hook calls ``model_loaded`` on it.
    """

    def __init__(self, multiproc_dir: str | None = None) -> None:
        self.registry = registry = CollectorRegistry()
        new = functools.partial(_new_metric, registry)
        request_labels = ("endpoint", "method", "status")
        self.requests = new(Counter, "iris_http_requests", "HTTP requests handled, by url rule, method and status.",
                            request_labels)
        self.latency = new(Histogram, "iris_http_request_duration_seconds",
                           "Time from the first before_request hook to the response, in seconds.",
                           request_labels, buckets=LATENCY_BUCKETS)
        # livesum: a dead worker's in-flight count must vanish, not linger in the sum.
        self.in_flight = new(Gauge, "iris_http_requests_in_flight", "Requests being handled right now.",
                             multiprocess_mode="livesum")
        self.predictions = new(Counter, "iris_predictions",
                               "Predicted rows, by model, version and predicted class ('' for regressors).",
                               ("model", "version", "class"))
        self.batch_size = new(Histogram, "iris_prediction_batch_size", "Rows per successful prediction request.",
                              ("model", "version"), buckets=BATCH_SIZE_BUCKETS)
        self.model_loads = new(Counter, "iris_model_loads", "Model loads and reloads, by outcome.",
                               ("model", "kind", "result"))
        # mostrecent: with preload the master sets it, a reloading worker may set it later;
        # the latest write across processes is the truth.
        self.model_info = new(Gauge, "iris_model_info", "1 for each loaded model version (0 once unloaded).",
                              ("name", "version", "sklearn_version"), multiprocess_mode="mostrecent")
        # Label children cached per key: a dict lookup per request instead of
        # prometheus-client's locked labels() call and tuple building.
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._class_children: dict[tuple[str, str, str], Counter] = {}
        self._batch_children: dict[tuple[str, str], Histogram] = {}
        # Known label sets are created at zero on the first request or scrape, and after a load.
        self._known_stale = True

        self.multiproc_dir = multiproc_dir
        if multiproc_dir is None:
            self.scrape_registry = registry
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        else:
            # Every worker writes its own files; a scrape, served by any one worker,
            # must read them all. Process and GC collectors are per process, so omitted.
            self.scrape_registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.scrape_registry, path=multiproc_dir)

    def model_loaded(
        self, name: str, version: str, sklearn_version: str, ok: bool, *, reload: bool = False
    ) -> None:
        """Count a model load (or reload) and, when it succeeded, publish its info."""
        kind = "reload" if reload else "load"
        self.model_loads.labels(name, kind, "success" if ok else "failure").inc()
        if ok:
            self.model_info.labels(name, str(version), sklearn_version).set(1)
            self._known_stale = True  # the new version's prediction series

    def model_unloaded(self, name: str, version: str, sklearn_version: str) -> None:
        """Mark a model version as no longer served.

        Set to 0 rather than removed: in multiprocess mode a removed series would
        still be read back from the files.
        """
        self.model_info.labels(name, str(version), sklearn_version).set(0)

    def render(self, accept: str) -> Response:
        """Encode the registry in the format the scraper asked for."""
        if self._known_stale:
            self.create_known_series(current_app._get_current_object())
        if self.multiproc_dir is not None:
            drop_dead(self.multiproc_dir)  # a worker that died since: its in-flight gauge no longer counts
        encode, content_type = choose_encoder(accept)
        return Response(encode(self.scrape_registry), headers={"Content-Type": content_type})

    def create_known_series(self, app: Flask) -> None:
        """Every route's 200 series and each loaded model's class series, at zero (see ``metrics_series``)."""
        self._known_stale = False
        for rule, method in known_routes(app, frozenset({SCRAPE_ENDPOINT})):
            self._request_pair((rule, method, 200))
        for model, version, classes in loaded_classes(app):
            self._batch_histogram(model, version)
            for cls in classes:
                self._class_counter(model, version, cls)

    # The hooks resolve flask's g and request proxies once: each proxy access costs
    # about a microsecond, more than a counter increment.

    def before_request(self) -> None:
        """Start the clock and count the request as in flight."""
        if request.endpoint == SCRAPE_ENDPOINT:
            return
        ctx = g._get_current_object()
        setattr(ctx, _START, time.perf_counter())
        self.in_flight.inc()
        setattr(ctx, _IN_FLIGHT, True)

    def after_request(self, response: Response) -> Response:
        """Count the request, observe its latency and the predictions it made."""
        req = request._get_current_object()
        if req.endpoint == SCRAPE_ENDPOINT:
            if self._known_stale:
                self.create_known_series(current_app._get_current_object())
            return response
        ctx = g._get_current_object()
        rule = req.url_rule
        status = response.status_code
        self.count(rule.rule if rule is not None else UNMATCHED_ENDPOINT, req.method, status, ctx.get(_START),
                   noted_result(ctx) if status < 400 else None)
        return response

    def count(self, rule: str, method: str, status: int, start: float | None, result: Any,
              app: Flask | None = None) -> None:
        """Count one answered request of ``rule`` (the hook's, and the row lane's in ``rest/lane``).

        ``start`` is missing when an earlier before_request hook answered first;
        ``result`` is the inference a successful request made, if any; ``app``
        defaults to the current one.
        """
        if self._known_stale:
            self.create_known_series(app or current_app._get_current_object())
        key = (rule, method if method in _KNOWN_METHODS else "other", status)
        children = self._request_children.get(key) or self._request_pair(key)
        children[0].inc()
        if start is not None:
            children[1].observe(time.perf_counter() - start)
        if result is not None:
            self._count_predictions(result)

    def teardown_request(self, exc: BaseException | None) -> None:
        """Leave the in-flight count, even when the request raised."""
        if g.pop(_IN_FLIGHT, False):
            self.in_flight.dec()

    def _count_predictions(self, result: Any) -> None:
        model, version, rows = result.model.name, str(result.model.version), result.rows
        (self._batch_children.get((model, version)) or self._batch_histogram(model, version)).observe(rows)
        counts = result.class_counts()
        if counts:
            for cls, count in counts:
                self._class_counter(model, version, str(cls)).inc(count)
        elif rows:
            self._class_counter(model, version, "").inc(rows)

    def _request_pair(self, key: tuple[str, str, int]) -> tuple[Counter, Histogram]:
        labels = (key[0], key[1], str(key[2]))
        return self._request_children.setdefault(key, (self.requests.labels(*labels), self.latency.labels(*labels)))

    def _batch_histogram(self, model: str, version: str) -> Histogram:
        return self._batch_children.setdefault((model, version), self.batch_size.labels(model, version))

    def _class_counter(self, model: str, version: str, cls: str) -> Counter:
        key = (model, version, cls)
        child = self._class_children.get(key)
        if child is None:
            child = self._class_children.setdefault(key, self.predictions.labels(*key))
        return child


def _new_metric(registry: CollectorRegistry, kind: Any, name: str, documentation: str,
                labels: tuple[str, ...] = (), **options: Any) -> Any:
    """One metric of ``kind`` in ``registry``: the one place metrics are constructed."""
    return kind(name, documentation, labels, registry=registry, **options)


class NullMetrics:
    """Stands in for ``AppMetrics`` when ``METRICS_ENABLED`` is off.

    The core calls ``model_loaded`` unconditionally; this keeps it from checking.
    """

    def model_loaded(
        self, name: str, version: str, sklearn_version: str, ok: bool, *, reload: bool = False
    ) -> None:
        """Do nothing: metrics are off."""

    def model_unloaded(self, name: str, version: str, sklearn_version: str) -> None:
        """Do nothing: metrics are off."""


class Metrics:
    """Flask extension: request, prediction and model metrics, served at ``/metrics``."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Create the app's registry and hooks, or a no-op stand-in when disabled.

        Register it before the other extensions so its clock starts first.
        """
        app.config.setdefault("METRICS_ENABLED", True)
        if not app.config["METRICS_ENABLED"]:
            state_of(app).metrics = NullMetrics()
            return
        path = multiprocess_dir()
        if path is not None and not os.path.isdir(path):
            raise RuntimeError(
                f"{MULTIPROC_ENV}={path} is not a directory: gunicorn.conf.py and iris-service serve "
                "create it, any other server must create (and empty) it before start"
            )
        state = AppMetrics(path)
        register_scrape_series(state.scrape_registry, app, multiprocess=path is not None)
        state_of(app).metrics = state
        app.before_request(state.before_request)
        app.after_request(state.after_request)
        app.teardown_request(state.teardown_request)
        app.register_blueprint(blp)
