"""Every setting's type and range, checked once at start: a bad one stops start-up with one line naming it."""
from __future__ import annotations

import logging
import os
import re
from typing import Any

from ..errors import ConfigError

#: Setting -> (kind, low, high): checked at start so a typo stops the service with one line.
_NUMBERS: dict[str, tuple[type, float, float]] = {
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
#: Numbers that may be null: MAX_CONTENT_LENGTH (no limit), GRPC_MAX_MESSAGE_BYTES (MAX_CONTENT_LENGTH's),
#: GRPC_PORT (no gRPC).
_NULLABLE = frozenset({"MAX_CONTENT_LENGTH", "GRPC_MAX_MESSAGE_BYTES", "GRPC_PORT"})
_BOOLEANS = ("PICKLE_ALLOWED", "ALLOW_VERSION_MISMATCH", "API_KEYS_PROTECT_PROBES", "API_KEYS_PROTECT_DOCS",
             "COMPRESS_RESPONSES", "METRICS_ENABLED", "TRACING_ENABLED", "UI_ENABLED")
#: Lists of text (keys, origins, type names): a list of strings, or ``"a,b"`` as the environment gives them.
_TEXT_LISTS = ("API_KEYS", "CORS_ORIGINS", "SKOPS_TRUSTED_TYPES")
#: Settings whose values are never repeated in an error message.
_SECRETS = frozenset({"API_KEYS", "ADMIN_TOKEN"})
#: The values ``INPUT_RANGE_POLICY`` and ``LOG_FORMAT`` accept (the documentation's table reads them too).
RANGE_POLICIES = ("allow", "reject")
LOG_FORMATS = ("json", "text")


def check_settings(settings: dict[str, Any]) -> None:
    """Refuse a setting of the wrong type or range at start, naming it; normalise the rest."""
    for key, (kind, low, high) in _NUMBERS.items():
        value = settings.get(key)
        if value is None and key in _NULLABLE:
            continue
        if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
            raise ConfigError(f"{key} must be a whole number from {low} to {high:g}, not {value!r}.")
    for key in _BOOLEANS:
        if key in settings and not isinstance(settings[key], bool):
            raise ConfigError(f"{key} must be true or false, not {settings[key]!r}.")
    _check_input_ranges(settings)
    _check_gc_threshold(settings)
    _check_trusted_keys(settings)
    for key in _TEXT_LISTS:
        _check_text_list(settings, key)
    _check_origins(settings)
    _check_admin_token(settings)
    _check_models(settings)
    _check_logging(settings)


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


def _check_text_list(config: dict[str, Any], key: str) -> None:
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
        raise ConfigError(f"{key} must be a list of strings or a comma-separated string, not {shown}.")
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
