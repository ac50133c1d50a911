"""iris-service: scikit-learn models behind a validated, production-ready REST API."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from .config import instance_path, load_config
from .errors import register_error_handlers
from .extensions import ModelStore
from .json_provider import OrjsonProvider
from .metrics import Metrics
from .request_log import RequestLog
from .tracing import Tracing
from .parsing import Api

__version__ = "0.1.0"
__all__ = ["ModelStore", "__version__", "create_app"]


def create_app(config: str | type | Mapping[str, Any] | None = None) -> Flask:
    """Build the app: config, extensions, errors, blueprints, CLI, in that order.

    ``config`` is an environment name, a config class, or a mapping of
    overrides (applied last); without it ``IRIS_SERVICE_ENV`` picks the class.
    """
    app = Flask(__name__, instance_path=str(instance_path()), instance_relative_config=True)
    load_config(app, config)
    app.json = OrjsonProvider(app)
    # "/models/a//predict" is a 404 JSON, not a 308 redirect to an HTML page.
    app.url_map.merge_slashes = False

    from .compression import Compression
    from .security import Security

    # Compression first: its after_request hook then runs after the security
    # headers hook, which hashes the uncompressed HTML it sends.
    Compression().init_app(app)
    Security().init_app(app)

    # Tracing first (the request span wraps everything), then request ids and
    # logs, then metrics, which must exist before models load to count loads.
    Tracing().init_app(app)
    RequestLog().init_app(app)
    Metrics().init_app(app)
    store = ModelStore()
    store.load_hooks.append(_count_model_load)
    store.init_app(app)

    api = Api(app)
    register_error_handlers(app)

    from .blueprints import admin, docs, health, models, predictions

    api.register_blueprint(predictions.blp)
    api.register_blueprint(health.blp)
    api.register_blueprint(models.blp)
    api.register_blueprint(admin.blp)
    app.register_blueprint(docs.blp)

    from .blueprints import mlflow, v1, v2

    api.register_blueprint(v1.blp)
    api.register_blueprint(v2.blp)
    api.register_blueprint(mlflow.blp)

    from .blueprints import ui

    app.register_blueprint(ui.blp)

    from .cli import train

    app.cli.add_command(train)
    return app


def _count_model_load(app: Flask, name: str, model: Any, error: Exception | None, reload: bool) -> None:
    """Feed every model load, reload and failure into the app's metrics."""
    metrics = app.extensions["iris_metrics"]
    if model is not None:
        sklearn_version = model.manifest.versions.get("scikit-learn", "")
        metrics.model_loaded(name, model.version, sklearn_version, True, reload=reload)
    else:
        metrics.model_loaded(name, "", "", False, reload=reload)
