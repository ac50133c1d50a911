"""Configuration classes, checked once at start; the one place that reads the environment.

Load order, later wins: the class for the environment, ``instance/config.py``,
``IRIS_SERVICE_*`` environment variables, then the mapping given to ``create_app``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .checks import check_settings
from .drift import check_drift
from .paths import model_file_problem
from .payload import check_payload_log

__all__ = ["CONFIGS", "Config", "ConfigError", "load_settings"]

ENV_PREFIX = "IRIS_SERVICE"
ENV_VAR = f"{ENV_PREFIX}_ENV"
INSTANCE_PATH_VAR = f"{ENV_PREFIX}_INSTANCE_PATH"
DEFAULT_ENV = "development"
#: The URLs not traced unless ``TRACING_EXCLUDED_URLS`` says otherwise: the probes and ``/metrics``.
DEFAULT_EXCLUDED_URLS = r"^[a-z]+://[^/]+/(v2/)?(health|metrics)(/|\?|$)"


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
    SKOPS_TRUSTED_TYPES: list[str] = []  # trusted beyond artifacts/skops.TRUSTED_TYPES
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
    # gRPC beside HTTP: its port under `serve` (--grpc-port wins) and in every gunicorn worker
    # (null: off), the largest message (null: MAX_CONTENT_LENGTH), threads per process, and
    # calls at once before RESOURCE_EXHAUSTED.
    GRPC_PORT: int | None = None
    GRPC_MAX_MESSAGE_BYTES: int | None = None
    GRPC_THREADS: int | None = None  # null: 2, or 4 with BATCHING on or auto (grpc/server.py)
    GRPC_MAX_CONCURRENT_RPCS = 64
    # API keys for every route but the probes and docs (IRIS_SERVICE_API_KEYS=key1,key2).
    API_KEYS: list[str] = []
    API_KEYS_PROTECT_PROBES = False  # True: /health* and /metrics need a key too
    API_KEYS_PROTECT_DOCS = False  # True: /openapi.json, /docs and the page at / too
    COMPRESS_RESPONSES = True
    COMPRESS_MIN_SIZE = 1024  # bytes; smaller answers are not worth a gzip header
    COMPRESS_LEVEL = 5
    METRICS_ENABLED = True
    # Served values against the manifest's training deciles (models trained by iris-service train):
    # histograms, out-of-range counts and the PSI of the last DRIFT_WINDOW rows per model.
    DRIFT_ENABLED = True
    DRIFT_WINDOW = 1000
    LOG_LEVEL = "INFO"
    LOG_FORMAT = "json"
    TRACING_ENABLED = False
    # URLs (regexes searched in the full URL) the tracing leaves out: probes and scrapes arrive every
    # few seconds and say nothing about inference. Anchored after the host: a model named "health"
    # is still traced. From the environment: comma-separated.
    TRACING_EXCLUDED_URLS: list[str] = [DEFAULT_EXCLUDED_URLS]
    UI_ENABLED = False
    BATCHING: dict[str, Any] | str = "off"
    # The collector's thresholds once the models are loaded (cli/process.settle_heap);
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
    # rest/blueprints/docs.py, so /docs works on a machine with no internet access.
    OPENAPI_SWAGGER_UI_URL = "/docs/assets/"
    # Payload logs (off): a JSON-lines file path or an http(s):// URL receiving CloudEvents;
    # the share of requests logged, rotation size and files kept, records waiting at most.
    PAYLOAD_LOG: str | None = None
    PAYLOAD_LOG_SAMPLE = 1.0
    PAYLOAD_LOG_MAX_BYTES = 100 * 1024 * 1024
    PAYLOAD_LOG_BACKUPS = 5
    PAYLOAD_LOG_QUEUE = 10_000


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
            f"Unknown environment {name!r} (--env, IRIS_SERVICE_ENV or ENV_NAME); choose one of {', '.join(CONFIGS)}."
        ) from None


#: Settings read from the environment as text, never as JSON: lists are comma-separated,
#: and a key or token such as ``0``, ``null`` or ``123`` stays the string it is.
STRING_SETTINGS = frozenset({"ADMIN_TOKEN", "PAYLOAD_LOG"})
LIST_SETTINGS = frozenset({"API_KEYS", "CORS_ORIGINS", "SKOPS_TRUSTED_TYPES", "TRUSTED_KEYS",
                           "TRACING_EXCLUDED_URLS"})


def load_settings(config: str | type | Mapping[str, Any] | None, instance: Path | None = None) -> dict[str, Any]:
    """The settings in the documented order, checked: class, ``instance/config.py``, environment, mapping.

    No web framework here: the REST factory copies the result into ``app.config``,
    and a front-end without Flask can build its data plane from the same dict.
    """
    cls = resolve_config_class(config)
    instance = instance or instance_path()
    settings = _upper(vars_of(cls))
    settings.update(_from_pyfile(instance / "config.py"))
    settings.update(_from_environment(os.environ))
    if isinstance(config, Mapping):
        settings.update(config)
    if settings.get("ENV_NAME") == "development" and not model_configured(settings):
        settings["MODEL_PATH"] = str(default_model_path(instance))
    check_settings(settings)
    check_drift(settings)
    check_payload_log(settings)
    if cls is ProductionConfig or settings.get("ENV_NAME") == "production":
        # Whatever instance files or variables say, the debugger never runs here.
        settings["DEBUG"] = False
        if _truthy(os.environ.get("FLASK_DEBUG", "")):
            # `flask run` would wrap the app in the Werkzeug debugger (a remote shell).
            raise ConfigError("FLASK_DEBUG is set: production never runs with the debugger.")
        if not model_configured(settings):
            raise ConfigError(
                "Production needs a model: set IRIS_SERVICE_MODEL_PATH to a trained "
                "artifact (for example: iris-service train --out models/iris/model.joblib)."
            )
        check_model_files(settings)
        if settings.get("PICKLE_ALLOWED") and not settings["TRUSTED_KEYS"]:
            logging.getLogger("iris_service").warning(
                "PICKLE_ALLOWED is on without TRUSTED_KEYS: whoever can write the model folder can run code "
                "here; set IRIS_SERVICE_TRUSTED_KEYS=/path/key.pub (iris-service keygen, iris-service sign) "
                "or IRIS_SERVICE_PICKLE_ALLOWED=false."
            )
    return settings


def check_model_files(settings: Mapping[str, Any], instance: Path | None = None) -> None:
    """Stop with one line naming the setting and the absolute path when a configured model file is missing.

    Production start-up and ``predict-file`` call it: there a missing model is fatal,
    while a development or testing server starts unready and says so on /health/ready.
    """
    problem = model_file_problem(settings, default_model_path(instance))
    if problem:
        raise ConfigError(problem)


def vars_of(cls: type) -> dict[str, Any]:
    """A config class's settings, inherited ones included (what ``from_object`` reads)."""
    return {key: getattr(cls, key) for key in dir(cls) if key.isupper()}


def _upper(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k.isupper()}


def _from_pyfile(path: Path) -> dict[str, Any]:
    """The upper-case names ``instance/config.py`` defines; nothing when there is no such file."""
    try:
        source = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror or exc}") from None
    namespace: dict[str, Any] = {"__file__": str(path)}
    try:
        exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - the operator's own config file
    except Exception as exc:  # noqa: BLE001 - one line naming the file, not a traceback
        raise ConfigError(f"{path} failed to run: {type(exc).__name__}: {exc}") from None
    return _upper(namespace)


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """``IRIS_SERVICE_<KEY>`` variables: JSON where it parses, text for secrets and lists."""
    prefix = f"{ENV_PREFIX}_"
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(prefix) or name in (ENV_VAR, INSTANCE_PATH_VAR):
            continue
        key = name[len(prefix):]
        if key in STRING_SETTINGS:
            out[key] = value
        elif key in LIST_SETTINGS:
            out[key] = [part.strip() for part in value.split(",") if part.strip()]
        else:
            out[key] = _loads_env(value)
    return out


def _truthy(value: str) -> bool:
    return bool(value) and value.strip().lower() not in ("0", "false", "no", "off")


def model_configured(config: Mapping[str, Any]) -> bool:
    return bool(config.get("MODEL_PATH") or config.get("MODELS") or config.get("MODEL_DIR"))


def _loads_env(value: str) -> Any:
    """Parse ``IRIS_SERVICE_*`` values as JSON when they parse, else keep the string.

    So ``true``, ``5000`` and ``{"a": 1}`` get their types; secrets and lists never
    come here (``STRING_SETTINGS``, ``LIST_SETTINGS``).
    """
    import json

    try:
        return json.loads(value)
    except ValueError:
        return value
