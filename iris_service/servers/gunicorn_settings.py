"""The ``GUNICORN_*`` variables ``gunicorn.conf.py`` reads, each parsed and checked against what it allows.

gunicorn reads its config file inside a ``try`` that prints the whole traceback
of any error, and checks few values itself: ``GUNICORN_WORKERS=abc`` ended in a
``ValueError`` traceback, ``GUNICORN_WORKERS=0`` started a master with no worker,
and ``GUNICORN_REUSE_PORT=maybe`` meant yes. Here every variable has a rule, and
a bad value is a :class:`~iris_service.errors.ConfigError` of one line naming the
variable, the value and what is allowed; the config file prints it and exits.
No gunicorn import: the master reads this before it builds anything.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .deadlines import REQUEST_TIMEOUT

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
#: gunicorn's log levels (``--log-level``); it silently logs at info for any other word.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
#: One address gunicorn binds: ``HOST:PORT``, ``[IPv6]:PORT``, ``unix:PATH`` or ``fd://N``.
_ADDRESS = re.compile(r"(unix:.+|fd://\d+|(tcp://)?(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):(\d{1,5}))")


@dataclass(frozen=True)
class Variable:
    """One ``GUNICORN_*`` variable: its default (as text, as the environment holds it) and its rule."""

    name: str
    default: str
    #: What the value may be, as the error says it.
    allowed: str
    parse: Callable[[str], Any]


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)  # ValueError for "abc", "1.5"
        if not low <= value <= high:
            raise ValueError(text)
        return value

    return parse


def seconds(text: str) -> float:
    """A positive, finite number of seconds (``2``, ``0.5``)."""
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise ValueError(text)
    return value


def _switch(text: str) -> bool:
    word = text.lower()
    if word not in _TRUE + _FALSE:
        raise ValueError(text)
    return word in _TRUE


def _level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise ValueError(text)
    return text.lower()


def _bind(text: str) -> str:
    """One address, as gunicorn's ``bind`` takes it from a string; a port from 0 to 65535."""
    match = _ADDRESS.fullmatch(text)
    if not match or (match.group(4) is not None and int(match.group(4)) > 65535):
        raise ValueError(text)
    return text


VARIABLES: tuple[Variable, ...] = (
    Variable("GUNICORN_BIND", "127.0.0.1:5000",
             "HOST:PORT (e.g. 0.0.0.0:8080), [IPv6]:PORT or unix:PATH", _bind),
    Variable("GUNICORN_WORKERS", "2", "a whole number of worker processes from 1 to 1024", _whole(1, 1024)),
    Variable("GUNICORN_THREADS", "4", "a whole number of threads per worker from 1 to 1024", _whole(1, 1024)),
    Variable("GUNICORN_TIMEOUT", "30", "a whole number of seconds from 0 (never) to 86400", _whole(0, 86400)),
    Variable("GUNICORN_GRACEFUL_TIMEOUT", "30", "a whole number of seconds from 0 to 86400", _whole(0, 86400)),
    Variable("GUNICORN_KEEPALIVE", "5", "a whole number of seconds from 0 (no keep-alive) to 3600",
             _whole(0, 3600)),
    Variable("GUNICORN_REUSE_PORT", "1", "1 or 0 (true/false, yes/no, on/off)", _switch),
    Variable("GUNICORN_LOG_LEVEL", "info", " or ".join(LOG_LEVELS), _level),
    # Read by each worker (gunicorn_connection.request_timeout); checked here too, before any worker starts.
    Variable("GUNICORN_REQUEST_TIMEOUT", f"{REQUEST_TIMEOUT:g}", "a positive number of seconds", seconds),
)


def read(environ: Mapping[str, str]) -> dict[str, Any]:
    """Every variable's value, parsed: the default where it is unset or blank.

    Raises ``ConfigError`` (one line) for the first variable whose value breaks its rule.
    """
    values: dict[str, Any] = {}
    for variable in VARIABLES:
        text = environ.get(variable.name, "").strip() or variable.default
        try:
            values[variable.name] = variable.parse(text)
        except ValueError:
            raise ConfigError(f"{variable.name} must be {variable.allowed}, not {text!r}.") from None
    return values
