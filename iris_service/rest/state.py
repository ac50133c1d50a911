"""The one ``app.extensions["iris_service"]`` state, and ``ModelStore``, the extension that fills it.

``ModelStore().init_app(app)`` builds the data plane from the app's config,
loads and verifies every model once, and keeps it in the state; views reach it
only through ``dataplane()``. The middleware keep their settings in the same
state, so one key holds everything this package adds to an app.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, g, request

from ..runtime import Model
from ..serving import DataPlane, InferResult, ServingSettings, model_sources
from ..serving.request_ids import request_id_for
from ..settings import Config, vars_of

EXTENSION_KEY = "iris_service"
#: ``g`` attributes the views set for the request log and metrics hooks.
RESULT = "iris_result"
MODEL = "iris_model"
#: The environ key of ``X-Request-ID``: read directly, a missing header costs no exception.
REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"


@dataclass
class ServiceState:
    """Everything one app holds of iris-service: the data plane and each middleware's settings."""

    dataplane: DataPlane | None = None
    metrics: Any = None
    request_log: Any = None
    security: Any = None
    compression: Any = None
    tracing: Any = None
    #: The ``PayloadLog`` (``middleware/payload_log``): ``record(request_id, result)`` after each answered
    #: inference, ``close()`` at exit; None when off.
    payload_log: Any = None


def state_of(app: Flask) -> ServiceState:
    """The app's state, created on first use (a host app may add our middleware one by one)."""
    state = app.extensions.get(EXTENSION_KEY)
    if state is None:
        state = app.extensions[EXTENSION_KEY] = ServiceState()
    return state


def dataplane() -> DataPlane:
    """The data plane of the app handling the current request."""
    plane = current_app.extensions[EXTENSION_KEY].dataplane
    if plane is None:
        raise RuntimeError("iris-service blueprints need ModelStore().init_app(app) first")
    return plane  # type: ignore[no-any-return]


def infer(name: str | None, body: Any, protocol: Any, version: str | None = None) -> Any:
    """Run one request through the data plane and note what the hooks record; return the answer.

    The model is noted before decoding, so a refused request's log line still names it;
    the payload log (when on) gets the answered result.
    """
    service = current_app.extensions[EXTENSION_KEY]
    plane = service.dataplane
    if plane is None:
        raise RuntimeError("iris-service blueprints need ModelStore().init_app(app) first")
    ctx = g._get_current_object()
    model = plane.model(name, version)
    setattr(ctx, MODEL, model)
    result = plane.run(model, body, protocol)
    setattr(ctx, RESULT, result)
    payload_log = service.payload_log
    if payload_log is not None:
        payload_log.record(request_id_of(ctx, request.environ), result)
    return result.answer


def request_id_of(ctx: Any, environ: dict[str, Any]) -> str:
    """The request's id, fixed on first use in ``g`` (``X-Request-ID`` if valid, else a new one).

    ``g.get``, not ``getattr``: a missing name on ``g`` raises and catches an AttributeError.
    """
    rid: str | None = ctx.get("request_id")
    if rid is None:
        rid = ctx.request_id = request_id_for(environ.get(REQUEST_ID_ENVIRON))
    return rid


def noted_model(ctx: Any) -> Model | None:
    return ctx.get(MODEL)  # type: ignore[no-any-return]


def noted_result(ctx: Any) -> InferResult | None:
    return ctx.get(RESULT)  # type: ignore[no-any-return]


class ModelStore:
    """Flask extension: the app's data plane, its models loaded and verified at start."""

    def __init__(self, app: Flask | None = None) -> None:
        #: Called as hook(app, name, model_or_None, error_or_None, reload) after each
        #: load; ``reload`` is False for the loads made while the app starts.
        self.load_hooks: list[Any] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> DataPlane:
        """Load every configured model; in production a failure stops start-up."""
        # A host app that mounts our blueprints gets our defaults for the keys it did not set.
        for key, value in vars_of(Config).items():
            if not key.startswith(("API_", "OPENAPI_")):
                app.config.setdefault(key, value)
        config = app.config
        state = state_of(app)
        tracing = state.tracing
        plane = DataPlane.start(
            model_sources(config),
            ServingSettings.from_config(config),
            default=config.get("DEFAULT_MODEL"),
            load_hooks=[lambda *args: self._notify(app, *args)],
            span=tracing.span if tracing is not None else None,
        )
        state.dataplane = plane
        return plane

    def _notify(self, app: Flask, name: str, model: Model | None, error: Exception | None, reload: bool) -> None:
        for hook in self.load_hooks:
            hook(app, name, model, error, reload)
