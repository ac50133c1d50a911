"""Request ids and one structured log line per request.

The line carries what an operator needs to find a request again (id, route, status,
timing, model, client, trace id) and nothing a client sent as data: no body, no
headers, no query string (which may hold an API key).
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from typing import Any, NamedTuple

import orjson
from flask import Flask, Response, g, request

from ..state import noted_model, noted_result, request_id_of, state_of
from .tracing import current_trace_id

LOGGER_NAME = "iris_service.requests"
REQUEST_ID_HEADER = "X-Request-ID"
LOG_FORMATS = ("json", "text")

_START = "_iris_request_log_start"
_TIME = "_iris_request_log_time"


def request_id() -> str:
    """The current request's id, taken from ``X-Request-ID`` if valid, else a new uuid4.

    Made on first use, so an error handler or a hook that runs before ours still gets
    the id that the response will carry.
    """
    return request_id_of(g._get_current_object(), request.environ)


def level_of(value: str | int) -> int:
    if isinstance(value, int):
        return value
    level = logging.getLevelName(str(value).upper())
    if not isinstance(level, int):
        raise ValueError(f"LOG_LEVEL {value!r} is not a logging level")
    return level


def printable(text: str) -> str:
    """``text`` with control characters, non-ASCII and backslashes escaped, so it cannot forge log lines.

    A client's value (a path, an address from ``X-Forwarded-For``, a version in a
    query) may hold a newline or a character that viewers and ``splitlines`` take
    for one (``\\x85``, ``\\u2028``); escaped, a line stays one line, and escaping the
    backslash too keeps an escape told apart from the characters it stands for.
    """
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text  # the usual case, without encoding a copy
    return text.encode("unicode_escape").decode("ascii")


def _token(text: object) -> str:
    """``printable`` for a field that is one word of the text line: spaces escaped too.

    An address or a method never holds a space, so one in them can only be a
    client's attempt to write fields of its own into the line.
    """
    return printable(str(text)).replace(" ", "\\x20")


class Answered(NamedTuple):
    """What the line says of one answered request: ``start`` is a ``perf_counter``, ``started_at`` a ``time``."""

    request_id: str
    method: str
    path: str
    status: int
    start: float | None
    started_at: float | None
    model: Any
    result: Any
    remote_addr: str | None


class RequestLogState:
    """The hooks, level and format of one app; kept in its state's ``request_log``.

    The level is the app's own (``LOG_LEVEL``): the logger's handlers and level are
    the process's, set by the entry points (``cli/log_writer.py``), never here.
    """

    def __init__(self, logger: logging.Logger, log_format: str, level: int, state: Any = None) -> None:
        self.logger = logger
        self.log_format = log_format
        self.level = level
        # The app's state, to see whether tracing is on without a current_app lookup.
        self.state = state
        # (Unix second, its ISO text): one tuple, so threads swap it whole.
        self._second: tuple[int, str] = (-1, "")

    def before_request(self) -> None:
        """Fix the request id and the start time."""
        ctx = g._get_current_object()
        setattr(ctx, _START, time.perf_counter())
        setattr(ctx, _TIME, time.time())
        request_id_of(ctx, request.environ)

    def after_request(self, response: Response) -> Response:
        """Echo the request id and log the request.

        Flask runs this for error-handler responses and its own 500 page too
        (``finalize_request``), so every response carries the id.
        """
        # Proxies resolved once: each access through flask's g or request costs ~1 us.
        ctx = g._get_current_object()
        req = request._get_current_object()
        environ = req.environ
        rid = request_id_of(ctx, environ)
        response.headers[REQUEST_ID_HEADER] = rid
        self.log(Answered(rid, req.method, req.path, response.status_code, ctx.get(_START), ctx.get(_TIME),
                          noted_model(ctx), noted_result(ctx), environ.get("REMOTE_ADDR")))
        return response

    def log(self, answered: Answered) -> None:
        """Write the line of one answered request (the hook's, and the row lane's in ``rest/lane``)."""
        level = logging.ERROR if answered.status >= 500 else logging.INFO
        if level >= self.level and self.logger.isEnabledFor(level):
            self._emit(level, self._format(self._record(answered, level)))

    def _emit(self, level: int, line: str) -> None:
        """Log the line; when our handler is the logger's only reader, queue it directly.

        A ``LogRecord`` (caller lookup, thread and process names) costs more than the
        line; it is made only when someone else listens (a test's handler, a filter).
        """
        logger = self.logger
        handlers = logger.handlers
        if len(handlers) == 1 and not logger.filters:
            handler = handlers[0]
            put = getattr(handler, "put_line", None)  # the entry points' queued stderr writer
            if put is not None and not handler.filters and handler.level <= level:
                put(line)
                return
        logger.log(level, line)

    def _record(self, answered: Answered, level: int) -> dict[str, Any]:
        start, model, result = answered.start, answered.model, answered.result
        duration_ms = round((time.perf_counter() - start) * 1000.0, 3) if start is not None else None
        record: dict[str, Any] = {
            "time": self._timestamp(answered.started_at or time.time()),
            "level": logging.getLevelName(level),
            "request_id": answered.request_id,
            "method": answered.method,
            "path": answered.path,
            "status": answered.status,
            "duration_ms": duration_ms,
            "model": model.name if model is not None else None,
            "model_version": model.version if model is not None else None,
            "batch_size": result.rows if result is not None else None,
            "remote_addr": answered.remote_addr,
        }
        if self.state is not None and self.state.tracing is not None:
            trace_id = current_trace_id()
            if trace_id is not None:
                record["trace_id"] = trace_id
        return record

    def _timestamp(self, t: float) -> str:
        """``2026-11-25T19:39:11.493Z`` for ``t``: the second's text is made once per second.

        ``datetime.fromtimestamp(...).isoformat()`` costs more than the rest of the
        record; requests within one second share everything but the milliseconds.
        """
        # Rounded to the microsecond the way datetime.fromtimestamp rounds, then cut to ms
        # (t is a time.time(), never negative, so the fraction is too).
        fraction, whole = math.modf(t)
        second, micros = int(whole), round(fraction * 1e6)
        if micros == 1_000_000:
            second, micros = second + 1, 0
        cached_second, text = self._second
        if cached_second != second:
            text = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (second, text)
        return f"{text}.{micros // 1000:03d}Z"

    def _format(self, record: dict[str, Any]) -> str:
        if self.log_format == "json":
            return orjson.dumps(record).decode()
        line = (
            f"{record['time']} {record['level']} {record['request_id']} "
            f"{_token(record['method'])} {printable(record['path'])} {record['status']} "
            f"{record['duration_ms']}ms client={_token(record['remote_addr'])}"
        )
        if record["model"] is not None:
            line += f" model={record['model']}@{record['model_version']} rows={record['batch_size']}"
        if "trace_id" in record:
            line += f" trace_id={record['trace_id']}"
        return line


class RequestLog:
    """Flask extension: ``X-Request-ID`` on every response and one log line per request."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the hooks; the ``iris_service.requests`` logger itself is left to the process.

        Register it early: its before_request hook then sets ``g.request_id`` before
        other hooks run, and its after_request hook runs last, seeing the final status.
        """
        app.config.setdefault("LOG_LEVEL", "INFO")
        app.config.setdefault("LOG_FORMAT", "json")
        log_format = str(app.config["LOG_FORMAT"]).lower()
        if log_format not in LOG_FORMATS:
            raise ValueError(f"LOG_FORMAT must be one of {LOG_FORMATS}, not {log_format!r}")
        service = state_of(app)
        state = RequestLogState(logging.getLogger(LOGGER_NAME), log_format, level_of(app.config["LOG_LEVEL"]), service)
        service.request_log = state
        app.before_request(state.before_request)
        app.after_request(state.after_request)
