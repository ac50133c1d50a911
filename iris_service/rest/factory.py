"""``create_app``: the application factory, read top to bottom as the table of contents of the service."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from ..settings import instance_path, load_settings
from .app import IrisFlask
from .blueprint import Api
from .blueprints import admin, docs, drift, explain, health, mlflow, models, predictions, ui, v1, v2
from .errors import NATIVE, register_error_handlers
from .json import OrjsonProvider
from .lane import RowLane
from .middleware.compression import Compression
from .middleware.metrics import Metrics
from .middleware.payload_log import PayloadLogging
from .middleware.request_log import RequestLog
from .middleware.security import Security, needs_api_key
from .middleware.tracing import Tracing
from .openapi import ApiKeyDocs
from .state import ModelStore, state_of

#: Documented in /openapi.json through flask-smorest, in this order.
API_BLUEPRINTS = (predictions, health, models, explain, drift, admin, v1, v2, mlflow)
#: Pages and assets, outside the OpenAPI document.
PAGE_BLUEPRINTS = (docs, ui)


def create_app(config: str | type | Mapping[str, Any] | None = None) -> Flask:
    """Build the app: config, extensions, errors, blueprints, CLI, in that order.

    ``config`` is an environment name, a config class, or a mapping of
    overrides (applied last); without it ``IRIS_SERVICE_ENV`` picks the class.
    Nothing here changes the process (GC, logging, exit hooks): the entry
    points do that (``iris_service/cli/process.py``).
    """
    instance = instance_path()
    app = IrisFlask("iris_service.rest", instance_path=str(instance), instance_relative_config=True)
    # The JSON provider before anything creates the Jinja environment (which keeps its dumps).
    app.json = OrjsonProvider(app)
    app.config.update(load_settings(config, Path(instance)))
    # "/models/a//predict" is a 404 JSON, not a 308 redirect to an HTML page.
    app.url_map.merge_slashes = False

    init_extensions(app)
    api = Api(app, spec_kwargs={"extra_plugins": openapi_plugins(app)})
    register_error_handlers(app)
    for module in API_BLUEPRINTS:
        api.register_blueprint(module.blp)
    for module in PAGE_BLUEPRINTS:
        app.register_blueprint(module.blp)
    register_commands(app)
    # Last, once every hook is in place: the lane checks it plays each one.
    app.wsgi_app = RowLane(app.wsgi_app, app)  # type: ignore[method-assign]
    return app


def init_extensions(app: Flask) -> None:
    """Initialise the extensions; their order is the order their hooks need.

    Flask runs ``before_request`` hooks in this order and ``after_request`` hooks
    in the reverse one. Tracing first (its span wraps everything), then the
    request log and metrics, so a request refused by the API-key check still
    gets an id, a duration and a log line written last with the final status;
    Compression before Security, so the security-headers hook sees (and hashes)
    the uncompressed HTML. Metrics exist before the models load, so start-up
    loads are counted; the payload log after metrics, whose registry counts its drops.
    """
    Tracing().init_app(app)
    RequestLog().init_app(app)
    Metrics().init_app(app)
    PayloadLogging().init_app(app)
    Compression().init_app(app)
    Security().init_app(app)
    store = ModelStore()
    store.load_hooks.append(_count_model_load)
    store.init_app(app)


def openapi_plugins(app: Flask) -> list[ApiKeyDocs]:
    """With API keys on, /openapi.json marks the operations that need one."""
    settings = state_of(app).security
    if not settings.api_keys:
        return []

    def error_style(blueprint: str) -> str:
        return getattr(app.blueprints.get(blueprint), "error_style", NATIVE)

    return [ApiKeyDocs(lambda rule, blueprint: needs_api_key(settings, rule, blueprint), error_style)]


def register_commands(app: Flask) -> None:
    """``flask train``: the same command as ``iris-service train``."""
    from ..training.command import train

    app.cli.add_command(train)


def _count_model_load(app: Flask, name: str, model: Any, error: Exception | None, reload: bool) -> None:
    """Feed every model load, reload and failure into the app's metrics."""
    metrics = state_of(app).metrics
    if model is not None:
        sklearn_version = model.manifest.versions.get("scikit-learn", "")
        metrics.model_loaded(name, model.version, sklearn_version, True, reload=reload)
    else:
        metrics.model_loaded(name, "", "", False, reload=reload)
