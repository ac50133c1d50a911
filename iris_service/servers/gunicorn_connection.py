"""One client connection of the request-timeout gunicorn worker: its deadline, and a reader that keeps it."""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from gunicorn.http.errors import NoMoreData
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers import gthread
from werkzeug.exceptions import RequestTimeout

from .deadlines import REQUEST_TIMEOUT
from .gunicorn_settings import seconds
from .request_progress import RequestProgress

#: The environment variable that sets the request timeout, in seconds.
TIMEOUT_ENV = "GUNICORN_REQUEST_TIMEOUT"


def request_timeout(environ: Mapping[str, str]) -> float:
    """The request timeout ``GUNICORN_REQUEST_TIMEOUT`` sets; ``REQUEST_TIMEOUT`` without it."""
    value = environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return REQUEST_TIMEOUT
    try:
        return seconds(value)
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV} must be a positive number of seconds, not {value!r}") from None


class _DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader, bounded by the connection's request deadline."""

    def __init__(self, conn: Connection, sock: socket.socket, max_chunk: int) -> None:
        super().__init__(sock, max_chunk)
        self.conn = conn

    def chunk(self, size_hint: int | None = None) -> bytes:
        deadline = self.conn.deadline
        if deadline is None:
            return super().chunk(size_hint)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return self.conn.request_late()
        previous = self.sock.gettimeout()
        self.sock.settimeout(remaining if previous is None else min(previous, remaining))
        try:
            return super().chunk(size_hint)
        except TimeoutError:
            if time.monotonic() < deadline:
                raise  # the caller's own, shorter timeout (gunicorn's keep-alive drain)
            return self.conn.request_late()
        finally:
            self.sock.settimeout(previous)


class Connection(gthread.TConn):
    """gthread's connection, with a request deadline and the bytes received in the event loop."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any, worker: Any) -> None:
        # worker: the gunicorn_worker.RequestTimeoutWorker that owns this connection
        super().__init__(cfg, sock, client, server)
        self.worker = worker
        #: monotonic time by which the current request must have arrived.
        self.deadline: float | None = None
        self.progress: RequestProgress | None = None
        #: Bytes the event loop received, for the thread's parser to read first.
        self.pending = b""
        #: monotonic time the event loop started receiving the current request.
        self.receiving_since = 0.0
        self.sent_continue = False
        self.timed_out = False
        #: "head" while gunicorn parses, "app" while the app runs, "done" after.
        self.phase = "head"
        #: Bytes discarded while lingering.
        self.lingered = 0

    def init(self) -> None:
        """gthread's set-up in the thread, then our reader and the buffered bytes."""
        super().init()
        unreader = getattr(self.parser, "unreader", None)
        if type(unreader) is SocketUnreader:
            bounded = _DeadlineUnreader(self, unreader.sock, unreader.mxchunk)
            bounded.buf = unreader.buf
            self.parser.unreader = unreader = bounded
        if self.pending and unreader is not None:
            unreader.buf.seek(0, os.SEEK_END)
            unreader.buf.write(self.pending)
            self.pending = b""
        if self.deadline is None:  # a pipelined request, read from what is buffered
            self.deadline = time.monotonic() + self.worker.request_timeout
        self.phase = "head"

    def request_late(self) -> bytes:
        """The deadline passed while a thread reads: end the request as its phase allows."""
        self.timed_out = True
        message = f"The request did not arrive within {self.worker.request_timeout:g} seconds."
        if self.phase == "app":
            # Raised inside the app's read of the body: Flask answers it as a JSON 408.
            raise RequestTimeout(description=message)
        if self.phase == "head":
            try:
                self.sock.settimeout(1.0)
                self.sock.sendall(self.worker.late_answer)
            except OSError:
                pass
            raise NoMoreData()  # gunicorn drops the connection quietly
        # Draining the rest of the body after the answer: gunicorn then closes.
        raise TimeoutError("request deadline passed")

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self.worker.linger(self)
        else:
            super().close()
