"""Every setting's type and range, checked once at start: a bad one stops start-up with one line naming it."""
from __future__ import annotations

import logging
import os
import re
from typing import Any

from ..errors import ConfigError

#: Setting -> (kind, low, high): checked at start so a typo stops the service with one line.
_NUMBERS: dict[str, tuple[type, int, int]] = {
    "MAX_BATCH_SIZE": (int, 1, 10**9),
    "MAX_CONTENT_LENGTH": (int, 1, 2**40),
    "COMPRESS_MIN_SIZE": (int, 0, 2**40),
    "COMPRESS_LEVEL": (int, 0, 9),
    # Not 0 (any free port): each worker process would get a different one.
    "GRPC_PORT": (int, 1, 65535),
    # grpcio takes message limits as a C int.
    "GRPC_MAX_MESSAGE_BYTES": (int, 1, 2**31 - 1),
    "GRPC_THREADS": (int, 1, 1024),
    "GRPC_MAX_CONCURRENT_RPCS": (int, 1, 10**6),
}
#: Numbers that may be null, and what null means.
_NULLABLE = {"MAX_CONTENT_LENGTH": "no limit", "GRPC_MAX_MESSAGE_BYTES": "MAX_CONTENT_LENGTH's",
             "GRPC_PORT": "no gRPC", "GRPC_THREADS": "2 (4 with BATCHING on or auto)"}
#: Numbers counted in bytes: their limits are written with a unit as well.
_BYTES = frozenset({"MAX_CONTENT_LENGTH", "COMPRESS_MIN_SIZE", "GRPC_MAX_MESSAGE_BYTES"})
_BOOLEANS = ("DEBUG", "TESTING", "PICKLE_ALLOWED", "ALLOW_VERSION_MISMATCH", "API_KEYS_PROTECT_PROBES",
             "API_KEYS_PROTECT_DOCS", "COMPRESS_RESPONSES", "METRICS_ENABLED", "TRACING_ENABLED", "UI_ENABLED")
#: Text settings (flask-smorest's among them) -> whether null is allowed (null turns that page off).
_TEXT = {"ENV_NAME": False, "API_TITLE": False, "API_VERSION": False, "OPENAPI_VERSION": False,
         "OPENAPI_URL_PREFIX": True, "OPENAPI_JSON_PATH": False, "OPENAPI_SWAGGER_UI_PATH": True,
         "OPENAPI_SWAGGER_UI_URL": True}
#: Lists of text (keys, origins, type names): a list of strings, or ``"a,b"`` as the environment gives them.
_TEXT_LISTS = ("API_KEYS", "CORS_ORIGINS", "SKOPS_TRUSTED_TYPES")
#: Settings whose values are never repeated in an error message.
_SECRETS = frozenset({"API_KEYS", "ADMIN_TOKEN"})
#: The values ``INPUT_RANGE_POLICY`` and ``LOG_FORMAT`` accept (the documentation's table reads them too).
RANGE_POLICIES = ("allow", "reject")
LOG_FORMATS = ("json", "text")


def allowed_range(key: str) -> str:
    """``from 1 to 1000000000``: plain integers (``1e+09`` reads like a typo), bytes with a unit too."""
    _, low, high = _NUMBERS[key]
    text = f"from {low} to {high}"
    if key in _BYTES:
        text = f"of bytes {text} ({_size(high)})"
    if key in _NULLABLE:
        text += f", or null for {_NULLABLE[key]}"
    return text


def _size(count: int) -> str:
    """``1099511627776`` -> ``1 TiB``; ``2147483647`` -> ``2 GiB - 1 byte``: what a limit means."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        whole, rest = divmod(count + 1, size)
        if count >= size and count % size == 0:
            return f"{count // size} {unit}"
        if whole and rest == 0:
            return f"{whole} {unit} - 1 byte"
    return f"{count} bytes"


def check_settings(settings: dict[str, Any]) -> None:
    """Refuse a setting of the wrong type or range at start, naming it; normalise the rest."""
    for key, (kind, low, high) in _NUMBERS.items():
        value = settings.get(key)
        if value is None and key in _NULLABLE:
            continue
        if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
            raise ConfigError(f"{key} must be a whole number {allowed_range(key)}, not {value!r}.")
    for key in _BOOLEANS:
        if key in settings and not isinstance(settings[key], bool):
            raise ConfigError(f"{key} must be true or false, not {settings[key]!r}.")
    _check_text(settings)
    _check_input_ranges(settings)
    _check_gc_threshold(settings)
    _check_trusted_keys(settings)
    for key in _TEXT_LISTS:
        _check_text_list(settings, key)
    _check_origins(settings)
    _check_excluded_urls(settings)
    _check_admin_token(settings)
    _check_models(settings)
    _check_logging(settings)


#: What flask-smorest accepts as ``OPENAPI_VERSION``: ``3.0.3``, ``3.1.0``, ``2.0``.
_OPENAPI_VERSION = re.compile(r"[23]\.[0-9]+(\.[0-9]+)?")


def _check_text(config: dict[str, Any]) -> None:
    """The environment's name, the API's title and version, the docs' paths: text (some may be null).

    ``IRIS_SERVICE_API_VERSION=2`` arrives as the JSON number 2, and flask-smorest
    would then fail on the first ``/openapi.json``; a path without its leading
    ``/`` would serve the docs somewhere nobody looks.
    """
    for key, nullable in _TEXT.items():
        value = config.get(key)
        if value is None and nullable:
            continue
        if not isinstance(value, str) or not value.strip():
            also = " or null (off)" if nullable else ""
            number = isinstance(value, int | float) and not isinstance(value, bool)
            # The environment's values are JSON: a bare 2 is a number, '"2"' the text.
            hint = f" (in the environment write it as JSON text: '\"{value}\"')" if number else ""
            raise ConfigError(f"{key} must be a non-empty string{also}{hint}, not {value!r}.")
    version = config.get("OPENAPI_VERSION")
    if not _OPENAPI_VERSION.fullmatch(version):
        raise ConfigError(f"OPENAPI_VERSION must be an OpenAPI version such as 3.0.3, not {version!r}.")
    for key in ("OPENAPI_URL_PREFIX", "OPENAPI_SWAGGER_UI_PATH", "OPENAPI_SWAGGER_UI_URL"):
        value = config.get(key)
        if value is not None and not value.startswith("/") and not re.match(r"https?://", value):
            raise ConfigError(f"{key} must be a path starting with / (or null: off), not {value!r}.")


#: Where models come from: one path each, or a name -> text mapping.
_PATHS = ("MODEL_PATH", "MODEL_DIR", "DEFAULT_MODEL")
_MAPPINGS = ("MODELS", "MODEL_VERSIONS")


def _check_models(config: dict[str, Any]) -> None:
    """``MODEL_PATH``/``MODEL_DIR``/``DEFAULT_MODEL`` are text, ``MODELS``/``MODEL_VERSIONS`` name -> text."""
    for key in _PATHS:
        value = config.get(key)
        if value is not None and not isinstance(value, str | os.PathLike):
            raise ConfigError(f"{key} must be a string, not {value!r}.")
    for key in _MAPPINGS:
        value = config.get(key) or {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str | os.PathLike) for k, v in value.items()
        ):
            raise ConfigError(f"{key} must map names to strings (JSON {{\"name\": \"...\"}}), not {value!r}.")


def _check_logging(config: dict[str, Any]) -> None:
    """``LOG_FORMAT`` json or text, ``LOG_LEVEL`` a logging level name or number."""
    log_format = str(config.get("LOG_FORMAT", "json")).lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be json or text, not {config['LOG_FORMAT']!r}.")
    level = config.get("LOG_LEVEL", "INFO")
    named = isinstance(level, str) and isinstance(logging.getLevelName(level.upper()), int)
    if not named and (isinstance(level, bool) or not isinstance(level, int)):
        raise ConfigError(f"LOG_LEVEL must be a logging level (DEBUG, INFO, WARNING, ERROR), not {level!r}.")


def _check_trusted_keys(config: dict[str, Any]) -> None:
    """``TRUSTED_KEYS`` becomes a list of file names; the files are read when the data plane starts."""
    value = config.get("TRUSTED_KEYS") or []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str | os.PathLike) for v in value):
        raise ConfigError(f"TRUSTED_KEYS must be a list of public key files (or 'a.pub,b.pub'), not {value!r}.")
    config["TRUSTED_KEYS"] = [str(v).strip() for v in value if str(v).strip()]


def _check_text_list(config: dict[str, Any], key: str,
                     must: str = "a list of strings or a comma-separated string") -> None:
    """``key`` becomes a list of non-empty strings, or start-up stops naming it.

    ``API_KEYS = 5`` or ``[1234]`` in ``instance/config.py`` used to reach the
    security hook as a number, where it crashed or was compared as text nobody
    typed; refusing it here says which setting to fix. ``None`` means none.
    """
    value = config.get(key)
    if value is None:
        value = []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        shown = _shape(value) if key in _SECRETS else repr(value)
        raise ConfigError(f"{key} must be {must}, not {shown}.")
    config[key] = [v.strip() for v in value if v.strip()]


#: What a browser sends as ``Origin``: scheme, host and an optional port (a trailing ``/`` is forgiven).
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s\"'\[\],]+/?", re.IGNORECASE)


def _check_origins(config: dict[str, Any]) -> None:
    """Every ``CORS_ORIGINS`` entry is ``*`` or an origin, or start-up stops naming it.

    An entry no browser can send (``app.example`` without its scheme, or the JSON
    ``["*"]`` in the variable, which is read as text) would leave CORS silently off.
    """
    for origin in config["CORS_ORIGINS"]:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"CORS_ORIGINS entries are origins like https://app.example (or *), not {origin!r}; "
                "from the environment write them comma-separated: https://a.example,https://b.example."
            )


def _check_excluded_urls(config: dict[str, Any]) -> None:
    """``TRACING_EXCLUDED_URLS`` becomes a list of regular expressions, each compiled once here.

    OpenTelemetry compiles them on the first traced request and splits text on
    commas itself: a number (``IRIS_SERVICE_TRACING_EXCLUDED_URLS`` read as JSON
    before it was a list setting) or an unbalanced ``(`` used to end start-up in
    a traceback from inside the instrumentation.
    """
    _check_text_list(config, "TRACING_EXCLUDED_URLS", "regular expressions of URLs not traced, a list of strings "
                     "or comma-separated text such as '/health,/metrics'")
    patterns = config["TRACING_EXCLUDED_URLS"]
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"TRACING_EXCLUDED_URLS entry {pattern!r} is not a regular expression ({exc}); "
                              "write one per URL pattern, comma-separated, such as '/health,/metrics'.") from None


def _shape(value: Any) -> str:
    """What a refused secret looks like, without its value: start-up errors end up in logs."""
    if isinstance(value, list | tuple):
        kinds = sorted({type(v).__name__ for v in value if not isinstance(v, str)})
        return f"a {type(value).__name__} holding {' and '.join(kinds)}" if kinds else f"a {type(value).__name__}"
    return f"a value of type {type(value).__name__}"


def _check_admin_token(config: dict[str, Any]) -> None:
    """``ADMIN_TOKEN`` is one string or nothing; an empty one turns the admin routes off like none.

    ``ADMIN_TOKEN = 123`` in ``instance/config.py`` is refused rather than turned
    into ``"123"``: the file's author wrote a number, and guessing what text they
    meant for a secret is worse than one line asking them to quote it.
    """
    token = config.get("ADMIN_TOKEN")
    if token is None:
        return
    if not isinstance(token, str):
        raise ConfigError(f"ADMIN_TOKEN must be a string (or unset), not {_shape(token)}.")
    config["ADMIN_TOKEN"] = token.strip() or None


def _check_input_ranges(config: dict[str, Any]) -> None:
    """Refuse a misspelt range policy at startup: it would silently serve extrapolations."""
    policy = str(config.get("INPUT_RANGE_POLICY", "allow")).lower()
    if policy not in RANGE_POLICIES:
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
