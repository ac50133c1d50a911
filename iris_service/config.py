"""Configuration classes and the one place that reads the environment.

Load order, later wins: the class for the environment, ``instance/config.py``,
``IRIS_SERVICE_*`` environment variables, then the mapping given to ``create_app``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask.helpers import get_debug_flag

ENV_PREFIX = "IRIS_SERVICE"
ENV_VAR = f"{ENV_PREFIX}_ENV"
INSTANCE_PATH_VAR = f"{ENV_PREFIX}_INSTANCE_PATH"
TRUSTED_KEYS_VAR = f"{ENV_PREFIX}_TRUSTED_KEYS"
DEFAULT_ENV = "development"


def instance_path() -> Path:
    """Where local config and development models live.

    Flask's own default points inside ``site-packages`` for an installed package,
    which nobody finds; the working directory's ``instance/`` is what the README
    and ``make run`` use, and ``IRIS_SERVICE_INSTANCE_PATH`` overrides it.
    """
    return Path(os.environ.get(INSTANCE_PATH_VAR) or Path.cwd() / "instance").resolve()


def default_model_path(instance: Path | None = None) -> Path:
    """The development artifact: trained into the instance folder by ``make run``."""
    return (instance or instance_path()) / "iris_model.joblib"


class Config:
    """Settings shared by every environment."""

    ENV_NAME = "base"
    DEBUG = False
    TESTING = False
    # Model selection: one artifact, a name -> path mapping, or a versioned folder.
    MODEL_PATH: str | None = None
    MODELS: dict[str, str] = {}
    MODEL_DIR: str | None = None
    MODEL_VERSIONS: dict[str, str] = {}  # name -> pinned version inside MODEL_DIR
    DEFAULT_MODEL: str | None = None
    PICKLE_ALLOWED = True
    ALLOW_VERSION_MISMATCH = False
    SKOPS_TRUSTED_TYPES: list[str] = []  # trusted beyond skops_format.TRUSTED_TYPES
    # Public key files (Ed25519, PEM or OpenSSH); set, every artifact must be signed by one
    # of them (iris-service sign). From the environment: IRIS_SERVICE_TRUSTED_KEYS=/k/a.pub,/k/b.pub
    TRUSTED_KEYS: list[str] = []
    MAX_BATCH_SIZE = 10_000
    # "reject": values outside the manifest's training min/max answer 422 (V1/V2/MLflow 400)
    # instead of an extrapolated prediction; the margin widens each range by a fraction of it.
    INPUT_RANGE_POLICY = "allow"
    INPUT_RANGE_MARGIN = 0.0
    # 10,000 rows of 4 numbers is ~400 kB of JSON; 16 MiB leaves room for wide models.
    MAX_CONTENT_LENGTH = 16 * 1024 * 1024
    ADMIN_TOKEN: str | None = None
    # API keys for every route but the probes and docs (IRIS_SERVICE_API_KEYS=key1,key2).
    API_KEYS: list[str] = []
    API_KEYS_PROTECT_PROBES = False  # True: /health* and /metrics need a key too
    API_KEYS_PROTECT_DOCS = False  # True: /openapi.json, /docs and the page at / too
    COMPRESS_RESPONSES = True
    COMPRESS_MIN_SIZE = 1024  # bytes; smaller answers are not worth a gzip header
    COMPRESS_LEVEL = 5
    METRICS_ENABLED = True
    LOG_LEVEL = "INFO"
    LOG_FORMAT = "json"
    TRACING_ENABLED = False
    UI_ENABLED = False
    BATCHING: dict[str, Any] | str = "off"
    # The collector's thresholds once the models are loaded (extensions.settle_heap);
    # null keeps Python's (700, 10, 10). Not applied when testing.
    GC_THRESHOLD: tuple[int, int, int] | None = (50_000, 20, 20)
    CORS_ORIGINS: list[str] = []
    # flask-smorest / OpenAPI
    API_TITLE = "iris-service"
    API_VERSION = "1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "/docs"
    # Swagger UI's assets come from the swagger-ui-bundle wheel and are served by
    # blueprints/docs.py, so /docs works on a machine with no internet access.
    OPENAPI_SWAGGER_UI_URL = "/docs/assets/"


class DevelopmentConfig(Config):
    """Local work: the model trained into the instance folder, readable logs."""

    ENV_NAME = "development"
    LOG_FORMAT = "text"
    UI_ENABLED = True


class TestingConfig(Config):
    """Tests: fixtures point ``MODEL_PATH`` at artifacts they train in a tmp dir."""

    ENV_NAME = "testing"
    TESTING = True
    UI_ENABLED = True


class ProductionConfig(Config):
    """Production: no default model (refuse to start without one), never debug."""

    ENV_NAME = "production"


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


class ConfigError(RuntimeError):
    """The configuration cannot produce a working service; startup stops."""


def resolve_config_class(config: str | type | Mapping[str, Any] | None) -> type[Config]:
    """Pick the class from a name, a class, or the ``IRIS_SERVICE_ENV`` variable.

    A mapping may name its environment with ``ENV_NAME`` (``{"ENV_NAME":
    "testing", ...}``); otherwise the variable decides, as for no config at all.
    """
    if isinstance(config, type):
        return config
    if isinstance(config, Mapping) and config.get("ENV_NAME"):
        name = str(config["ENV_NAME"])
    elif isinstance(config, str):
        name = config
    else:
        name = os.environ.get(ENV_VAR, DEFAULT_ENV)
    try:
        return CONFIGS[name.lower()]
    except KeyError:
        raise ConfigError(
            f"Unknown environment {name!r}; choose one of {', '.join(CONFIGS)}."
        ) from None


def load_config(app: Flask, config: str | type | Mapping[str, Any] | None) -> None:
    """Fill ``app.config`` in the documented order, then enforce invariants."""
    cls = resolve_config_class(config)
    app.config.from_object(cls)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env(ENV_PREFIX, loads=_loads_env)
    if TRUSTED_KEYS_VAR in os.environ:
        # File names, never JSON: a key file called "1" or "null" is still a file name.
        app.config["TRUSTED_KEYS"] = os.environ[TRUSTED_KEYS_VAR]
    if isinstance(config, Mapping):
        app.config.update(config)
    if app.config.get("ENV_NAME") == "development" and not _model_configured(app.config):
        app.config["MODEL_PATH"] = str(default_model_path(Path(app.instance_path)))
    _check_input_ranges(app.config)
    _check_gc_threshold(app.config)
    _check_trusted_keys(app.config)
    if cls is ProductionConfig or app.config.get("ENV_NAME") == "production":
        # Whatever instance files or variables say, the debugger never runs here.
        app.config["DEBUG"] = False
        app.debug = False
        if get_debug_flag():
            # `flask run` would wrap the app in the Werkzeug debugger (a remote shell).
            raise ConfigError("FLASK_DEBUG is set: production never runs with the debugger.")
        if not _model_configured(app.config):
            raise ConfigError(
                "Production needs a model: set IRIS_SERVICE_MODEL_PATH to a trained "
                "artifact (for example: iris-service train --out models/iris/model.joblib)."
            )
        if app.config.get("PICKLE_ALLOWED") and not app.config["TRUSTED_KEYS"]:
            logging.getLogger("iris_service").warning(
                "PICKLE_ALLOWED is on without TRUSTED_KEYS: whoever can write the model folder can run code "
                "here; set IRIS_SERVICE_TRUSTED_KEYS=/path/key.pub (iris-service keygen, iris-service sign) "
                "or IRIS_SERVICE_PICKLE_ALLOWED=false."
            )


def _check_input_ranges(config: dict[str, Any]) -> None:
    """Refuse a misspelt range policy at startup: it would silently serve extrapolations."""
    policy = str(config.get("INPUT_RANGE_POLICY", "allow")).lower()
    if policy not in ("allow", "reject"):
        raise ConfigError(f"INPUT_RANGE_POLICY must be 'allow' or 'reject', not {config['INPUT_RANGE_POLICY']!r}.")
    config["INPUT_RANGE_POLICY"] = policy
    margin = config.get("INPUT_RANGE_MARGIN", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < float("inf"):
        raise ConfigError(f"INPUT_RANGE_MARGIN must be a number >= 0 (a fraction of each range), not {margin!r}.")


def _check_gc_threshold(config: dict[str, Any]) -> None:
    """``GC_THRESHOLD`` is null/false, or one to three positive integers (``gc.set_threshold``)."""
    value = config.get("GC_THRESHOLD")
    if value is None or value is False:
        config["GC_THRESHOLD"] = None
        return
    if (
        not isinstance(value, list | tuple)
        or not 1 <= len(value) <= 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ConfigError(f"GC_THRESHOLD must be null or one to three positive integers, not {value!r}.")
    config["GC_THRESHOLD"] = tuple(value)


def _check_trusted_keys(config: dict[str, Any]) -> None:
    """``TRUSTED_KEYS`` becomes a list of file names; the files are read when the models load.

    A comma-separated string (the environment's form) is split; anything but a
    string or a list of strings is refused rather than guessed at.
    """
    value = config.get("TRUSTED_KEYS")
    if not value:
        config["TRUSTED_KEYS"] = []
        return
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str | os.PathLike) for v in value):
        raise ConfigError(
            f"TRUSTED_KEYS must be a list of public key files (or 'a.pub,b.pub'), not {value!r}."
        )
    config["TRUSTED_KEYS"] = [str(v).strip() for v in value if str(v).strip()]


def _model_configured(config: Mapping[str, Any]) -> bool:
    return bool(config.get("MODEL_PATH") or config.get("MODELS") or config.get("MODEL_DIR"))


def _loads_env(value: str) -> Any:
    """Parse ``IRIS_SERVICE_*`` values as JSON when they parse, else keep the string.

    So ``true``, ``5000`` and ``{"a": 1}`` get their types; list-valued settings
    such as ``API_KEYS`` also accept ``key1,key2`` and split it where they are read.
    """
    import json

    try:
        return json.loads(value)
    except ValueError:
        return value
