"""iris-service: scikit-learn models behind a validated, production-ready REST API."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from .app import IrisFlask
from .compression import Compression
from .config import instance_path, load_config
from .errors import register_error_handlers
from .extensions import ModelStore
from .json_provider import OrjsonProvider
from .metrics import Metrics
from .openapi import ApiKeyDocs
from .parsing import Api
from .request_log import RequestLog
from .security import EXTENSION_KEY as SECURITY_KEY
from .security import Security, needs_api_key
from .tracing import Tracing

__version__ = "0.1.0"
__all__ = ["ModelStore", "__version__", "create_app"]


def create_app(config: str | type | Mapping[str, Any] | None = None) -> Flask:
    """Build the app: config, extensions, errors, blueprints, CLI, in that order.

    ``config`` is an environment name, a config class, or a mapping of
    overrides (applied last); without it ``IRIS_SERVICE_ENV`` picks the class.
    """
    app = IrisFlask(__name__, instance_path=str(instance_path()), instance_relative_config=True)
    load_config(app, config)
    app.json = OrjsonProvider(app)
    # "/models/a//predict" is a 404 JSON, not a 308 redirect to an HTML page.
    app.url_map.merge_slashes = False

    init_extensions(app)
    api = Api(app, spec_kwargs={"extra_plugins": openapi_plugins(app)})
    register_error_handlers(app)
    register_blueprints(app, api)
    register_commands(app)
    return app


def init_extensions(app: Flask) -> None:
    """Initialise the extensions; their order is the order their hooks need.

    Flask runs ``before_request`` hooks in this order and ``after_request`` hooks
    in the reverse one. Tracing first (its span wraps everything), then the
    request log and metrics, so a request refused by the API-key check still
    gets an id, a duration and a log line written last with the final status;
    Compression before Security, so the security-headers hook sees (and hashes)
    the uncompressed HTML. Metrics exist before the models load, so start-up
    loads are counted.
    """
    Tracing().init_app(app)
    RequestLog().init_app(app)
    Metrics().init_app(app)
    Compression().init_app(app)
    Security().init_app(app)
    store = ModelStore()
    store.load_hooks.append(_count_model_load)
    store.init_app(app)


def openapi_plugins(app: Flask) -> list[ApiKeyDocs]:
    """With API keys on, /openapi.json marks the operations that need one."""
    settings = app.extensions[SECURITY_KEY]
    if not settings.api_keys:
        return []
    return [ApiKeyDocs(lambda rule, blueprint: needs_api_key(settings, rule, blueprint))]


def register_blueprints(app: Flask, api: Api) -> None:
    """The JSON APIs go through flask-smorest (documented in /openapi.json); pages do not."""
    from .blueprints import admin, docs, health, mlflow, models, predictions, ui, v1, v2

    for blueprint in (predictions.blp, health.blp, models.blp, admin.blp, v1.blp, v2.blp, mlflow.blp):
        api.register_blueprint(blueprint)
    app.register_blueprint(docs.blp)
    app.register_blueprint(ui.blp)


def register_commands(app: Flask) -> None:
    """``flask train``: the same command as ``iris-service train``."""
    from .cli import train

    app.cli.add_command(train)


def _count_model_load(app: Flask, name: str, model: Any, error: Exception | None, reload: bool) -> None:
    """Feed every model load, reload and failure into the app's metrics."""
    metrics = app.extensions["iris_metrics"]
    if model is not None:
        sklearn_version = model.manifest.versions.get("scikit-learn", "")
        metrics.model_loaded(name, model.version, sklearn_version, True, reload=reload)
    else:
        metrics.model_loaded(name, "", "", False, reload=reload)
