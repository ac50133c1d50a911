"""Request ids and one structured log line per request.

The line carries what an operator needs to find a request again (id, route, status,
timing, model, client, trace id) and nothing a client sent as data: no body, no
headers, no query string (which may hold an API key).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import random
import re
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any, TextIO

import orjson
from flask import Flask, Response, g, request

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
#: The environ key of ``X-Request-ID``: read directly, a missing header costs no exception.
_REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"
# The version (4) and variant (RFC 4122) bits of a random UUID.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)
#: How often the writer thread writes the lines queued since its last write (seconds).
WRITE_INTERVAL = 0.05
#: How long ``flush`` waits for the writer thread before giving up (seconds).
FLUSH_TIMEOUT = 5.0


def request_id() -> str:
    """The current request's id, taken from ``X-Request-ID`` if valid, else a new uuid4.

    Made on first use, so an error handler or a hook that runs before ours still gets
    the id that the response will carry.
    """
    return _request_id(g._get_current_object(), request.environ)


def _request_id(ctx: Any, environ: dict[str, Any]) -> str:
    """``request_id`` for an already resolved ``g`` and WSGI environ (hooks resolve them once).

    ``g.get``, not ``getattr``: a missing name on ``g`` raises and catches an AttributeError.
    """
    rid: str | None = ctx.get("request_id")
    if rid is None:
        incoming = environ.get(_REQUEST_ID_ENVIRON, "")
        rid = incoming if incoming and _VALID_REQUEST_ID.fullmatch(incoming) else _new_id()
        ctx.request_id = rid
    return rid


def _new_id() -> str:
    """A random (version 4) UUID as 32 hex digits, in the format of ``uuid.uuid4().hex``.

    From ``random``, not ``os.urandom``: an id is a label, not a secret, and the
    system call releases the GIL, which a request thread then waits to get back
    behind the busy ones. Python reseeds ``random`` in a forked child.
    """
    return f"{(random.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET:032x}"


class _StderrHandler(logging.Handler):
    """Hands each line to a writer thread that writes it to ``sys.stderr``.

    A write to stderr releases the GIL, and a request thread then waits behind the
    busy ones to get it back: under 8 waitress threads the log line cost more than
    the prediction. The request thread only enqueues; every ``WRITE_INTERVAL`` the
    writer takes the queued lines and writes them in one call. Each line goes to the ``sys.stderr`` of
    the moment it was logged (pytest and servers replace it), as ``logging.lastResort``
    does. ``flush`` waits for the lines logged so far, and ``logging.shutdown`` (at
    exit) flushes and closes the handler, so no line is lost on a clean stop.
    """

    def __init__(self) -> None:
        super().__init__()
        self._queue: queue.SimpleQueue[tuple[TextIO | None, Any]] = queue.SimpleQueue()
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._pid = -1

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.put(record.getMessage())
        except Exception:
            self.handleError(record)

    def put(self, line: str) -> None:
        """Queue one preformatted line (what ``emit`` does without a ``LogRecord``)."""
        if self._pid != os.getpid():
            self._start()
        self._queue.put((sys.stderr, line))

    def flush(self) -> None:
        """Return once every line queued before the call is written (or after FLUSH_TIMEOUT)."""
        writer = self._writer
        if writer is None or self._pid != os.getpid() or not writer.is_alive():
            return
        done = threading.Event()
        self._queue.put((None, done))
        self._wake.set()
        done.wait(FLUSH_TIMEOUT)

    def close(self) -> None:
        """Write what is queued and stop the writer thread."""
        writer = self._writer
        if writer is not None and self._pid == os.getpid() and writer.is_alive():
            self._queue.put((None, None))
            self._wake.set()
            writer.join(FLUSH_TIMEOUT)
        self._writer = None
        super().close()

    def _start(self) -> None:
        """Start the writer in this process (again after a fork: threads do not survive one)."""
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.SimpleQueue()
            self._wake = threading.Event()
            self._writer = threading.Thread(target=self._write_forever, name="iris-request-log", daemon=True)
            self._writer.start()
            self._pid = os.getpid()

    def _write_forever(self) -> None:
        # Woken every WRITE_INTERVAL, not per line: a thread woken per line would
        # itself queue for the GIL behind the request threads, once per request.
        source, wake = self._queue, self._wake
        while True:
            wake.wait(WRITE_INTERVAL)
            wake.clear()
            batch = []
            while True:
                try:
                    batch.append(source.get_nowait())
                except queue.Empty:
                    break
            stop = False
            lines: list[str] = []
            stream: TextIO | None = None
            for target, item in batch:
                if target is None:
                    _write(stream, lines)
                    lines, stream = [], None
                    if item is None:
                        stop = True
                    else:
                        item.set()
                    continue
                if target is not stream:
                    _write(stream, lines)
                    lines, stream = [], target
                lines.append(item)
            _write(stream, lines)
            if stop:
                return


def _write(stream: TextIO | None, lines: list[str]) -> None:
    """Write lines with one call; a closed or broken stream drops them (as a dead terminal would)."""
    if stream is None or not lines:
        return
    try:
        stream.write("\n".join(lines) + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def flush() -> None:
    """Wait until every request line logged so far has reached stderr.

    Lines are written by a background thread; a test reading stderr right after a
    request calls this first.
    """
    for handler in logging.getLogger(LOGGER_NAME).handlers:
        if isinstance(handler, _StderrHandler):
            handler.flush()


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


class RequestLogState:
    """The hooks and format of one app; lives in ``app.extensions["iris_request_log"]``."""

    def __init__(self, logger: logging.Logger, log_format: str, extensions: dict[str, Any] | None = None) -> None:
        self.logger = logger
        self.log_format = log_format
        # The app's extensions, to see whether tracing is on without a current_app lookup.
        self.extensions = extensions if extensions is not None else {}
        # (Unix second, its ISO text): one tuple, so threads swap it whole.
        self._second: tuple[int, str] = (-1, "")

    def before_request(self) -> None:
        """Fix the request id and the start time."""
        ctx = g._get_current_object()
        setattr(ctx, _START, time.perf_counter())
        setattr(ctx, _TIME, time.time())
        _request_id(ctx, request.environ)

    def after_request(self, response: Response) -> Response:
        """Echo the request id and log the request.

        Flask runs this for error-handler responses and its own 500 page too
        (``finalize_request``), so every response carries the id.
        """
        # Proxies resolved once: each access through flask's g or request costs ~1 us.
        ctx = g._get_current_object()
        req = request._get_current_object()
        rid = _request_id(ctx, req.environ)
        response.headers[REQUEST_ID_HEADER] = rid
        level = logging.ERROR if response.status_code >= 500 else logging.INFO
        if self.logger.isEnabledFor(level):
            self._emit(level, self._format(self._record(ctx, req, rid, response, level)))
        return response

    def _emit(self, level: int, line: str) -> None:
        """Log the line; when our handler is the logger's only reader, queue it directly.

        A ``LogRecord`` (caller lookup, thread and process names) costs more than the
        line; it is made only when someone else listens (a test's handler, a filter).
        """
        logger = self.logger
        handlers = logger.handlers
        if len(handlers) == 1 and not logger.filters:
            handler = handlers[0]
            if type(handler) is _StderrHandler and not handler.filters and handler.level <= level:
                handler.put(line)
                return
        logger.log(level, line)

    def _record(self, ctx: Any, req: Any, rid: str, response: Response, level: int) -> dict[str, Any]:
        start = ctx.get(_START)
        duration_ms = round((time.perf_counter() - start) * 1000.0, 3) if start is not None else None
        record: dict[str, Any] = {
            "time": self._timestamp(ctx.get(_TIME) or time.time()),
            "level": logging.getLevelName(level),
            "request_id": rid,
            "method": req.method,
            "path": req.path,
            "status": response.status_code,
            "duration_ms": duration_ms,
            "model": ctx.get("model_name"),
            "model_version": ctx.get("model_version"),
            "batch_size": ctx.get("batch_size"),
            "remote_addr": req.environ.get("REMOTE_ADDR"),
        }
        if TRACING_KEY in self.extensions:
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
        state = RequestLogState(logger, log_format, app.extensions)
        app.extensions[EXTENSION_KEY] = state
        app.before_request(state.before_request)
        app.after_request(state.after_request)
