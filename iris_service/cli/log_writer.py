"""The request log's writer for a server process: one queued stderr handler on ``iris_service.requests``.

Process-wide by nature (a logger's handlers and level, a writer thread), so the
entry points install it (``iris-service serve``, ``wsgi.py``, ``gunicorn.conf.py``
through ``process.prepare``); ``create_app`` never does, and a host app that
mounts our blueprints keeps its own logging.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from typing import Any, TextIO

from ..rest.middleware.request_log import LOGGER_NAME, level_of

#: How often the writer thread writes the lines queued since its last write (seconds).
WRITE_INTERVAL = 0.05
#: How long ``flush`` waits for the writer thread before giving up (seconds).
FLUSH_TIMEOUT = 5.0


class QueuedStderrHandler(logging.Handler):
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
            self.put_line(record.getMessage())
        except Exception:
            self.handleError(record)

    def put_line(self, line: str) -> None:
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
        if isinstance(handler, QueuedStderrHandler):
            handler.flush()


def configure_request_log(level: int | str = logging.INFO) -> logging.Logger:
    """Give the request logger exactly one handler of ours, however many apps are made.

    It does not propagate: the root logger may have its own handler (basicConfig,
    a server), which would print every line twice.
    """
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(handler, QueuedStderrHandler) for handler in logger.handlers):
        logger.addHandler(QueuedStderrHandler())
    logger.setLevel(level_of(level))
    logger.propagate = False
    return logger
