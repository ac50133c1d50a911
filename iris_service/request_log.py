"""Request ids and one structured log line per request.

The line carries what an operator needs to find a request again (id, route, status,
timing, model, client, trace id) and nothing a client sent as data: no body, no
headers, no query string (which may hold an API key).
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Any, TextIO

import orjson
from flask import Flask, Response, current_app, g, request

from .tracing import EXTENSION_KEY as TRACING_KEY
from .tracing import current_trace_id

EXTENSION_KEY = "iris_request_log"
LOGGER_NAME = "iris_service.requests"
REQUEST_ID_HEADER = "X-Request-ID"
LOG_FORMATS = ("json", "text")

# Ids are echoed into headers and logs, so only a safe, bounded alphabet is trusted.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_START = "_iris_request_log_start"
_TIME = "_iris_request_log_time"


def request_id() -> str:
    """The current request's id, taken from ``X-Request-ID`` if valid, else a new uuid4.

    Made on first use, so an error handler or a hook that runs before ours still gets
    the id that the response will carry.
    """
    rid: str | None = g.get("request_id")
    if rid is None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        rid = incoming if _VALID_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        g.request_id = rid
    return rid


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each line to whatever ``sys.stderr`` is now.

    Binding the stream at creation would keep writing to a stream that pytest
    or a server has since replaced (as ``logging.lastResort`` avoids too).
    """

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def _configure_logger(level: int) -> logging.Logger:
    """Give the request logger exactly one handler of ours, however many apps are made.

    It does not propagate: the root logger may have its own handler (basicConfig,
    a server), which would print every line twice.
    """
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(level)
    logger.propagate = False
    return logger


def _level(value: str | int) -> int:
    if isinstance(value, int):
        return value
    level = logging.getLevelName(str(value).upper())
    if not isinstance(level, int):
        raise ValueError(f"LOG_LEVEL {value!r} is not a logging level")
    return level


def _printable(text: str) -> str:
    """Escape control characters, so a crafted path cannot forge text log lines."""
    return text.encode("unicode_escape").decode("ascii")


class RequestLogState:
    """The hooks and format of one app; lives in ``app.extensions["iris_request_log"]``."""

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        self.logger = logger
        self.log_format = log_format

    def before_request(self) -> None:
        """Fix the request id and the start time."""
        ctx = g._get_current_object()
        setattr(ctx, _START, time.perf_counter())
        setattr(ctx, _TIME, time.time())
        request_id()

    def after_request(self, response: Response) -> Response:
        """Echo the request id and log the request.

        Flask runs this for error-handler responses and its own 500 page too
        (``finalize_request``), so every response carries the id.
        """
        rid = request_id()
        response.headers[REQUEST_ID_HEADER] = rid
        level = logging.ERROR if response.status_code >= 500 else logging.INFO
        if self.logger.isEnabledFor(level):
            record = self._record(rid, response, level)
            self.logger.log(level, self._format(record))
        return response

    def _record(self, rid: str, response: Response, level: int) -> dict[str, Any]:
        # Proxies resolved once: each access through flask's g or request costs ~1 us.
        ctx = g._get_current_object()
        req = request._get_current_object()
        start = getattr(ctx, _START, None)
        duration_ms = round((time.perf_counter() - start) * 1000.0, 3) if start is not None else None
        started = datetime.fromtimestamp(getattr(ctx, _TIME, None) or time.time(), timezone.utc)
        record: dict[str, Any] = {
            "time": started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": logging.getLevelName(level),
            "request_id": rid,
            "method": req.method,
            "path": req.path,
            "status": response.status_code,
            "duration_ms": duration_ms,
            "model": getattr(ctx, "model_name", None),
            "model_version": getattr(ctx, "model_version", None),
            "batch_size": getattr(ctx, "batch_size", None),
            "remote_addr": req.remote_addr,
        }
        if TRACING_KEY in current_app.extensions:
            trace_id = current_trace_id()
            if trace_id is not None:
                record["trace_id"] = trace_id
        return record

    def _format(self, record: dict[str, Any]) -> str:
        if self.log_format == "json":
            return orjson.dumps(record).decode()
        line = (
            f"{record['time']} {record['level']} {record['request_id']} "
            f"{record['method']} {_printable(record['path'])} {record['status']} "
            f"{record['duration_ms']}ms client={record['remote_addr']}"
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
        """Configure the ``iris_service.requests`` logger and register the hooks.

        Register it early: its before_request hook then sets ``g.request_id`` before
        other hooks run, and its after_request hook runs last, seeing the final status.
        """
        app.config.setdefault("LOG_LEVEL", "INFO")
        app.config.setdefault("LOG_FORMAT", "json")
        log_format = str(app.config["LOG_FORMAT"]).lower()
        if log_format not in LOG_FORMATS:
            raise ValueError(f"LOG_FORMAT must be one of {LOG_FORMATS}, not {log_format!r}")
        logger = _configure_logger(_level(app.config["LOG_LEVEL"]))
        state = RequestLogState(logger, log_format)
        app.extensions[EXTENSION_KEY] = state
        app.before_request(state.before_request)
        app.after_request(state.after_request)
