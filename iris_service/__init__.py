"""iris-service: scikit-learn models behind a validated, production-ready REST API."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from .config import instance_path, load_config
from .errors import register_error_handlers
from .extensions import ModelStore
from .json_provider import OrjsonProvider
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

    ModelStore().init_app(app)

    api = Api(app)
    register_error_handlers(app)

    from .blueprints import admin, docs, health, models, predictions

    api.register_blueprint(predictions.blp)
    api.register_blueprint(health.blp)
    api.register_blueprint(models.blp)
    api.register_blueprint(admin.blp)
    app.register_blueprint(docs.blp)

    from .cli import train

    app.cli.add_command(train)
    return app
