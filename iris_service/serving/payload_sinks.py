"""Where payload records go: a JSON-lines file rotated by size, or CloudEvents POSTed to a URL.

Only the payload log's writer thread calls a sink, so a sink never sees two
callers in one process. Each ``write(entries)`` returns how many entries it
could not deliver; it never raises, because nothing a sink meets (a full disk,
a dead receiver) may reach a request.
"""
from __future__ import annotations

import http.client
import logging
import os
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from .payload_records import JSON_OPTIONS, Clock, Entry, Lines, json_array, outputs_of

try:  # POSIX: several worker processes append to one file under a lock
    import fcntl
except ImportError:  # pragma: no cover - Windows runs one process (waitress)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("iris_service.payload_log")

#: CloudEvents types of KServe's inference logger, one event each for the request and the response.
REQUEST_EVENT = "org.kubeflow.serving.inference.request"
RESPONSE_EVENT = "org.kubeflow.serving.inference.response"
EVENT_SOURCE = "urn:iris-service"
#: Seconds an HTTP receiver has to connect and answer each event.
HTTP_TIMEOUT = 2.0


class FileSink:
    """JSON lines appended to ``path``, rotated to ``path.1`` ... ``path.<backups>`` past ``max_bytes``.

    Worker processes (gunicorn) share one file: each batch is appended under an
    exclusive lock on ``path.lock``, and a process notices that another one
    rotated the file (its inode changed) and reopens it. ``backups`` 0 starts
    the file again instead of keeping a rotated copy. Files are created owner-only
    (0600): they hold what clients sent.
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes: int, backups: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._line = Lines()
        self._failing = False

    def write(self, entries: Sequence[Entry | bytes]) -> int:
        """Append the records: entries formatted here, lines (a request thread formatted them) as they are."""
        if not entries:
            return 0
        try:
            line = self._line
            lines = [e if isinstance(e, bytes) else line(e) for e in entries]
            with self._locked():
                self._append(lines)
        except (OSError, TypeError, ValueError) as exc:
            if not self._failing:  # once per outage (a full disk), not every batch
                log.warning("payload log: records not written to %s (%s); undelivered records are counted in "
                            "iris_payload_log_dropped_total", self.path, exc)
            self._failing = True
            self._close_file()
            return len(entries)
        self._failing = False
        return 0

    def close(self) -> None:
        self._close_file()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _append(self, lines: list[bytes]) -> None:
        """Write ``lines`` in as few calls as the rotation size allows; a line longer than it gets a file of its own."""
        fd = self._open()
        size = os.fstat(fd).st_size
        chunk: list[bytes] = []
        pending = 0
        for line in lines:
            if size + pending + len(line) > self.max_bytes and size + pending > 0:
                _write_all(fd, b"".join(chunk))
                chunk, pending = [], 0
                fd = self._rotate()
                size = 0
            chunk.append(line)
            pending += len(line)
        _write_all(fd, b"".join(chunk))

    def _open(self) -> int:
        """The file's descriptor, reopened when another process rotated (or someone removed) the file."""
        fd = self._fd
        if fd is not None:
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            self._close_file()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    def _rotate(self) -> int:
        self._close_file()
        if self.backups == 0:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)
            return self._fd
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        return self._open()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class HttpSink:
    """Each record as two CloudEvents in binary mode, as KServe's inference logger sends them.

    ``ce-type`` is ``org.kubeflow.serving.inference.request`` for the rows and
    ``...response`` for the answer, both with the request id as ``ce-id``; the
    body is JSON (``{"instances": rows}``, then ``{"predictions": ...}``). One
    kept-alive connection, ``HTTP_TIMEOUT`` per event; a record whose events
    were not both accepted (2xx) is counted as not delivered.
    """

    def __init__(self, url: str, timeout: float = HTTP_TIMEOUT) -> None:
        parts = urlsplit(url)
        self.https = parts.scheme.lower() == "https"
        self.host = parts.hostname or ""
        self.port = parts.port
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._warned = False
        self._clock = Clock()

    def write(self, entries: Sequence[Entry]) -> int:
        failed = 0
        for entry in entries:
            try:
                request, response = self.events(entry)
            except (TypeError, ValueError):
                failed += 1
                continue
            if not (self._post(*request) and self._post(*response)):
                failed += 1
        return failed

    def events(self, entry: Entry) -> tuple[tuple[dict[str, str], bytes], tuple[dict[str, str], bytes]]:
        """The request and response events: (headers, body) each."""
        model = entry.model
        common = {
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": entry.request_id,
            "ce-source": EVENT_SOURCE,
            "ce-time": self._clock(entry.time),
            "ce-inferenceservicename": model.name,
            "ce-namespace": "",
            "ce-component": "predictor",
            "ce-endpoint": "",
            "ce-modelversion": str(model.version),
        }
        request_body = orjson.dumps({"instances": json_array(entry.x)}, option=JSON_OPTIONS)
        answer = {"model_name": model.name, "model_version": str(model.version), **outputs_of(entry)}
        response_body = orjson.dumps(answer, option=JSON_OPTIONS)
        return ({**common, "ce-type": REQUEST_EVENT}, request_body), ({**common, "ce-type": RESPONSE_EVENT},
                                                                      response_body)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _post(self, headers: dict[str, str], body: bytes) -> bool:
        try:
            conn = self._conn or self._connect()
            conn.request("POST", self.target, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.will_close:
                self.close()
            if 200 <= response.status < 300:
                return True
            problem = f"it answered {response.status}"
        except (OSError, ValueError, http.client.HTTPException) as exc:  # ValueError: a header http.client refuses
            self.close()
            problem = str(exc) or type(exc).__name__
        if not self._warned:  # once: a dead receiver would otherwise write a line per record
            self._warned = True
            log.warning("payload log: an event was not delivered to %s:%s (%s); undelivered records are "
                        "counted in iris_payload_log_dropped_total", self.host, self.port or "", problem)
        return False

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                     context=ssl.create_default_context())
        else:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn
