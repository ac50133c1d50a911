"""The row lane: plain inference requests answered by the views' own code, without Flask's per-request machinery.

Flask spends more on a request (a request and an app context, URL matching, the
hooks' dispatch, a ``Response`` and its header objects) than the data plane
spends predicting one row. This WSGI layer takes only the requests whose answer
is a view's success and for which every cross-cutting step is known:
``POST /predict`` and the V2 ``infer`` routes, with a JSON body. The body goes
through the view's own schema and the data plane, and the answer gets the
hooks' request id, log line, metrics, payload record, security headers and gzip
decision from the functions the hooks themselves call. Anything else (a query
string, a cookie, a compressed, chunked or large body, API keys, CORS, tracing,
a hook or signal receiver the lane does not play, and any request the schema or
the data plane refuses) goes to Flask untouched, with the body handed back as
read, so errors keep their one handler. ``tests/test_lane.py`` holds both paths
to byte-identical answers, lines and counters.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import flask.signals
import orjson
from flask import Flask

from ..protocols import native, v2
from ..serving.request_ids import request_id_for
from .app import FILE_WRAPPER_MIN_SIZE
from .blueprints import predictions
from .blueprints import v2 as v2_views
from .blueprints.mlflow import mlflow_error_fields
from .json import MIMETYPE, dumps
from .middleware.compression import compress_response, gzipped
from .middleware.metrics import AppMetrics
from .middleware.metrics_drift_files import DriftFiles
from .middleware.request_log import REQUEST_ID_HEADER, Answered, RequestLogState
from .middleware.security import JSON_ANSWER_HEADERS, check_api_key, harden
from .state import EXTENSION_KEY, REQUEST_ID_ENVIRON

#: Bodies past this go to Flask: a row of a few hundred features fits, and the lane never buffers much.
MAX_BODY = 8192
#: Flask sends these around every request; a receiver of any of them must see each one.
_SIGNALS = (
    flask.signals.request_started,
    flask.signals.request_finished,
    flask.signals.request_tearing_down,
    flask.signals.got_request_exception,
    flask.signals.appcontext_pushed,
    flask.signals.appcontext_popped,
    flask.signals.appcontext_tearing_down,
)
#: Environ keys whose presence means Flask must answer (cookies: sessions; the rest: the body's framing).
_TO_FLASK = ("HTTP_COOKIE", "HTTP_CONTENT_ENCODING", "HTTP_TRANSFER_ENCODING", "HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
_V2_MODELS, _V2_INFER = "/v2/models/", "/infer"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
#: What a route's view makes of a parsed body: the model, the result, content type, body, extra headers.
Answer = tuple[Any, Any, str, bytes, list[tuple[str, str]]]


def _predict(plane: Any, data: Any, name: str | None, version: str | None) -> Answer:
    """``predictions.Predict.post`` and its response layer."""
    model = plane.model(name, version)
    result = plane.run(model, predictions.REQUEST_SCHEMA.load(data), native)
    return model, result, MIMETYPE, dumps(predictions.RESPONSE_SCHEMA.dump(result.answer)), []


def _v2_infer(plane: Any, data: Any, name: str | None, version: str | None) -> Answer:
    """``v2.Infer.post`` for a JSON body (binary outputs included) and its response layer."""
    model = plane.model(name, version)
    result = plane.run(model, v2.InferRequest(v2_views.INFER_REQUEST_SCHEMA.load(data), b""), v2)
    answer = result.answer
    if not answer.has_binary:
        return model, result, MIMETYPE, dumps(v2_views.INFER_RESPONSE_SCHEMA.dump(answer.header)), []
    body, header_length = v2_views.binary_answer(answer)
    return model, result, v2_views.OCTET_STREAM, body, [(v2.HEADER_LENGTH, header_length)]


class Route(NamedTuple):
    """A view the lane answers for: its endpoint, url rule (the metrics label) and what it does."""

    blueprint: str
    endpoint: str
    rule: str
    answer: Callable[[Any, Any, str | None, str | None], Answer]


PREDICT = Route("predictions", "predictions.Predict", "/predict", _predict)
V2_INFER = Route("v2", "v2.Infer", "/v2/models/<name>/infer", _v2_infer)
V2_INFER_VERSION = Route("v2", "v2.InferVersion", "/v2/models/<name>/versions/<version>/infer", _v2_infer)


def route_of(path: str) -> tuple[Route, str | None, str | None] | None:
    """The route and its ``name`` and ``version`` as Flask's URL map would match ``path`` (None: not ours)."""
    if path == PREDICT.rule:
        return PREDICT, None, None
    if path.startswith(_V2_MODELS) and path.endswith(_V2_INFER):
        parts = path[len(_V2_MODELS):-len(_V2_INFER)].split("/")
        if len(parts) == 1 and parts[0]:
            return V2_INFER, parts[0], None
        if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
            return V2_INFER_VERSION, parts[0], parts[2]
    return None


class RowLane:
    """WSGI layer in front of ``app.wsgi_app`` (the factory installs it last, after every hook)."""

    def __init__(self, wsgi_app: WSGIApp, app: Flask) -> None:
        self.wsgi_app = wsgi_app
        self.app = app
        self._hooks = _hooks(app)
        rules = {(rule.rule, rule.endpoint) for rule in app.url_map.iter_rules()}
        #: Endpoint -> its view, for the routes the lane takes: each is our view, and every hook
        #: that would run on it is one the lane plays. Others are off for good.
        self.views = {
            route.endpoint: app.view_functions[route.endpoint]
            for route in (PREDICT, V2_INFER, V2_INFER_VERSION)
            if (route.rule, route.endpoint) in rules
            and all(_played(hook) for registry in self._hooks for key in (None, route.blueprint)
                    for hook in registry.get(key, ()))
        }
        #: Endpoint -> the before hooks the lane calls as they are (they need no request), in Flask's order.
        self._before = {
            endpoint: tuple(hook for key in (None, blueprint) for hook in self._hooks[0].get(key, ())
                            if getattr(hook, "__func__", None) in _CALLED_METHODS)
            for endpoint, blueprint in ((r.endpoint, r.blueprint) for r in (PREDICT, V2_INFER, V2_INFER_VERSION))
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (
            environ.get("REQUEST_METHOD") != "POST"
            or environ.get("CONTENT_TYPE") != MIMETYPE
            or environ.get("QUERY_STRING")
            or any(key in environ for key in _TO_FLASK)
        ):
            return self.wsgi_app(environ, start_response)
        matched = route_of(environ.get("PATH_INFO", ""))
        length = environ.get("CONTENT_LENGTH", "")
        size = int(length) if length.isdigit() else 0
        limit = self.app.config.get("MAX_CONTENT_LENGTH")
        if (matched is None or not 0 < size <= MAX_BODY or (limit is not None and size > limit)
                or not self._open(matched[0])):
            return self.wsgi_app(environ, start_response)
        try:
            body = environ["wsgi.input"].read(size)
        except Exception:  # noqa: BLE001 - a client gone mid-body: Flask answers the short body it left
            body = b""
        answered = self._answer(environ, body, size, *matched)
        if answered is None:
            environ["wsgi.input"] = io.BytesIO(body)  # Flask reads the same bytes (and sees a short body too)
            return self.wsgi_app(environ, start_response)
        headers, payload = answered
        start_response("200 OK", headers)
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None and len(payload) >= FILE_WRAPPER_MIN_SIZE:
            return wrapper(io.BytesIO(payload), len(payload))  # type: ignore[no-any-return]
        return [payload]

    def _open(self, route: Route) -> bool:
        """Whether this app is still the one the factory built, with nothing that needs Flask's path."""
        app, hooks = self.app, self._hooks
        view = self.views.get(route.endpoint)
        service = app.extensions.get(EXTENSION_KEY)
        return (
            view is not None
            and service is not None
            and service.dataplane is not None
            and service.tracing is None
            and service.request_log is not None
            and service.security is not None
            and not service.security.api_keys
            and not service.security.cors_origins
            and app.view_functions.get(route.endpoint) is view
            and app.before_request_funcs == hooks[0]
            and app.after_request_funcs == hooks[1]
            and app.teardown_request_funcs == hooks[2]
            and app.url_value_preprocessors == hooks[3]
            and not any(signal.receivers for signal in _SIGNALS)
        )

    def _answer(self, environ: dict[str, Any], body: bytes, size: int, route: Route, name: str | None,
                version: str | None) -> tuple[list[tuple[str, str]], bytes] | None:
        """The view's answer and every hook's part in it, or None when Flask must answer instead."""
        start, started_at = time.perf_counter(), time.time()
        for hook in self._before[route.endpoint]:
            hook()
        service = self.app.extensions[EXTENSION_KEY]
        metrics = service.metrics if isinstance(service.metrics, AppMetrics) else None
        if metrics is not None:
            metrics.in_flight.inc()
        try:
            if len(body) != size:
                return None
            try:
                model, result, content_type, payload, extra = route.answer(service.dataplane, orjson.loads(body),
                                                                           name, version)
            except Exception:  # noqa: BLE001 - every refusal (and any surprise) is Flask's to answer
                return None
            rid = request_id_for(environ.get(REQUEST_ID_ENVIRON))
            if service.payload_log is not None:
                service.payload_log.record(rid, result)
            after = []
            compression = service.compression
            if compression is not None and compression.enabled:
                after.append(("Vary", "Accept-Encoding"))
                zipped = gzipped(payload, compression, environ.get("HTTP_ACCEPT_ENCODING", "")) if (
                    content_type == MIMETYPE) else None
                if zipped is not None:
                    payload = zipped
                    after.append(("Content-Encoding", "gzip"))
            headers = [("Content-Type", content_type), ("Content-Length", str(len(payload))), *extra,
                       *JSON_ANSWER_HEADERS, *after, (REQUEST_ID_HEADER, rid)]
            if metrics is not None:
                metrics.count(route.rule, "POST", 200, start, result, self.app)
            service.request_log.log(Answered(rid, "POST", environ["PATH_INFO"], 200, start, started_at, model,
                                             result, environ.get("REMOTE_ADDR")))
            return headers, payload
        finally:
            if metrics is not None:
                metrics.in_flight.dec()


def _hooks(app: Flask) -> tuple[dict[Any, list[Any]], ...]:
    """Every per-request hook the app holds, copied: a change after the factory sends requests to Flask."""
    return tuple(
        {key: list(funcs) for key, funcs in registry.items()}
        for registry in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs,
                         app.url_value_preprocessors)
    )


def _played(hook: Any) -> bool:
    """Whether the lane does what ``hook`` does on a successful answer (mlflow's and V2's guard: nothing)."""
    return (
        getattr(hook, "__func__", None) in _PLAYED_METHODS | _CALLED_METHODS
        or getattr(hook, "func", None) in _PLAYED_PARTIALS
        or hook is mlflow_error_fields
        or hook is v2_views.guard_repository
    )


_PLAYED_METHODS = frozenset({
    RequestLogState.before_request, RequestLogState.after_request,
    AppMetrics.before_request, AppMetrics.after_request, AppMetrics.teardown_request,
})
_PLAYED_PARTIALS = frozenset({check_api_key, harden, compress_response})
#: Hooks that need no request, which the lane calls itself: under several workers (multiprocess
#: metrics) each worker's drift writer starts on its first request, lane or Flask.
_CALLED_METHODS = frozenset({DriftFiles.start})
