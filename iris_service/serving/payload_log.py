"""Payload logs: a sample of answered requests (id, time, model, version, inputs, outputs) to a file or a URL.

A request thread samples, and queues either its answer's JSON line (the file
sink, up to ``FORMAT_NOW_ROWS`` rows: formatted while hot in the cache, see
``payload_records``) or what the data plane already holds (``InferResult``:
the rows and the prediction, no copy); one writer thread per process formats
the rest and delivers them (``payload_sinks``). The
queue is bounded, so a slow or dead sink never delays or fails a request:
what does not fit is dropped and counted (``dropped(reason, n)``, the
front-ends' ``iris_payload_log_dropped_total``), and ``close`` writes what is
queued before the process exits. Nothing runs, no thread, no file, until the
first record: ``create_app`` has no process-wide effect, and a forked worker
starts its own writer.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .payload_records import Entry, Lines
from .payload_sinks import FileSink, HttpSink

log = logging.getLogger("iris_service.payload_log")

#: How often the writer takes what was queued since its last pass (seconds): request threads never wake it.
WRITE_INTERVAL = 0.05
#: How long ``close`` (at exit, after SIGTERM's drain) waits for the queued records (seconds).
CLOSE_TIMEOUT = 5.0
#: Besides PAYLOAD_LOG_QUEUE records, the queued rows and answers are bounded in bytes: a queue of
#: 10,000-row batches must not take the host's memory.
MAX_QUEUED_BYTES = 256 * 1024 * 1024
#: ``dropped`` reasons: no room in the queue, the sink failed, still queued when ``close`` gave up.
QUEUE_FULL, SINK_ERROR, NOT_FLUSHED = "queue_full", "sink_error", "not_flushed"
#: Answers of fewer rows than this get their file line made by the request thread (a few µs);
#: larger ones are formatted by the writer, so no request waits for a big batch's JSON.
FORMAT_NOW_ROWS = 64

Dropped = Callable[[str, int], None]

#: Forks this process has been through: a record compares one integer, not a ``getpid`` system call,
#: to know whether its writer thread is still this process's (threads do not survive a fork).
_forks = 0
_watching = False


def _count_fork() -> None:
    global _forks
    _forks += 1


def _watch_forks() -> None:
    """Count forks from the first writer on (where ``os.register_at_fork`` exists: not on Windows)."""
    global _watching
    if not _watching and hasattr(os, "register_at_fork"):
        _watching = True
        os.register_at_fork(after_in_child=_count_fork)
DROPPED_METRIC = "iris_payload_log_dropped"
DROPPED_HELP = ("Payload log records not written, by reason: queue_full (the writer is behind), "
                "sink_error (the file or receiver failed), not_flushed (still queued at exit).")


@dataclass(frozen=True)
class PayloadLogSettings:
    """``PAYLOAD_LOG*``, read from a checked config (``settings.load_settings``)."""

    target: str
    sample: float = 1.0
    max_bytes: int = 100 * 1024 * 1024
    backups: int = 5
    queue: int = 10_000

    @classmethod
    def from_config(cls, config: Any) -> PayloadLogSettings | None:
        """The settings, or None when ``PAYLOAD_LOG`` is off (the default)."""
        target = config.get("PAYLOAD_LOG")
        if not target:
            return None
        return cls(
            target=str(target),
            sample=float(config.get("PAYLOAD_LOG_SAMPLE", 1.0)),
            max_bytes=int(config.get("PAYLOAD_LOG_MAX_BYTES", cls.max_bytes)),
            backups=int(config.get("PAYLOAD_LOG_BACKUPS", cls.backups)),
            queue=int(config.get("PAYLOAD_LOG_QUEUE", cls.queue)),
        )

    @property
    def is_http(self) -> bool:
        return self.target.lower().startswith(("http://", "https://"))

    def sink(self) -> FileSink | HttpSink:
        """A new sink for ``target``: made in the writer thread, so nothing is opened before a record."""
        if self.is_http:
            return HttpSink(self.target)
        return FileSink(self.target, self.max_bytes, self.backups)


def dropped_counter(registry: Any) -> Dropped:
    """``iris_payload_log_dropped_total{reason}`` in a Prometheus ``registry``, as a ``dropped`` callable.

    One per service: REST and gRPC share the log, so the front-end that builds it registers it.
    Under gunicorn's multiprocess mode the counter is a file per worker like every other.
    """
    from prometheus_client import Counter

    counter = Counter(DROPPED_METRIC, DROPPED_HELP, ("reason",), registry=registry)
    children: dict[str, Any] = {}

    def dropped(reason: str, count: int) -> None:
        child = children.get(reason)
        if child is None:
            child = children.setdefault(reason, counter.labels(reason))
        child.inc(count)

    return dropped


def _ignore(reason: str, count: int) -> None:
    """No counter given: drops are still bounded, just not counted."""


_STOP = object()
#: What a queue holds besides markers: lines (the file sink's, made by request threads) and entries.
_RECORDS = (bytes, Entry)


class _Queue:
    """One writer's queue: entries and markers in order, their bytes, and the writer's wake-up event.

    A new writer (after a fork, or after ``close``) gets a new one, so a writer that
    ``close`` gave up on never takes another writer's records.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: deque[Any] = deque()
        self.bytes = 0
        self.wake = threading.Event()

    def put_marker(self, marker: Any) -> None:
        with self.lock:
            self.items.append(marker)
        self.wake.set()

    def take(self) -> list[Any]:
        with self.lock:
            items = list(self.items)
            self.items.clear()
            self.bytes -= sum(_size(item) for item in items)
        return items


def _size(item: Any) -> int:
    """The bytes a queued record holds: a line's length, an entry's arrays; 0 for a marker."""
    if isinstance(item, bytes):
        return len(item)
    return item.size if isinstance(item, Entry) else 0


class PayloadLog:
    """The bounded queue and the writer thread of one service (REST and gRPC share it)."""

    def __init__(self, settings: PayloadLogSettings, dropped: Dropped | None = None,
                 sink: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self._dropped = dropped or _ignore
        self._make_sink = sink or settings.sink
        #: The file sink takes lines; another sink (HTTP's CloudEvents, a test's) takes entries.
        self._lines = Lines() if sink is None and not settings.is_http else None
        self._sample = settings.sample
        self._limit = settings.queue
        self._start_lock = threading.Lock()
        self._queue = _Queue()
        self._writer: threading.Thread | None = None
        self._pid = -1
        self._generation = -1  # the value of _forks when this process's writer started

    def record(self, request_id: str, result: Any) -> None:
        """Queue one answered request (an ``InferResult``), if sampled and if there is room; never blocks."""
        if self._sample < 1.0 and random.random() >= self._sample:
            return
        if self._generation != _forks:
            self._start()
        x, prediction = result.x, result.prediction
        lines = self._lines
        item: Entry | bytes
        if lines is not None and result.rows < FORMAT_NOW_ROWS:
            item = lines.line(request_id, time.time(), result.model, x, prediction)
            size = len(item)
        else:
            size = _nbytes(x) + _nbytes(prediction.classes) + _nbytes(prediction.probabilities) + _nbytes(
                prediction.values)
            item = Entry(request_id, time.time(), result.model, x, prediction, size)
        queue = self._queue
        with queue.lock:
            if len(queue.items) < self._limit and queue.bytes + size <= MAX_QUEUED_BYTES:
                queue.items.append(item)
                queue.bytes += size
                return
        self._dropped(QUEUE_FULL, 1)

    def flush(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Wait until every record queued before the call is delivered (or failed); False on timeout."""
        if not self._running():
            return True
        done = threading.Event()
        self._queue.put_marker(done)
        return done.wait(timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Deliver what is queued, then stop the writer; records left after ``timeout`` are counted as dropped.

        The process's exit hook (``cli/process.prepare``): after SIGTERM's drain, the
        answered requests' records reach the sink before the process ends. A record
        made later starts a new writer.
        """
        writer, queue = self._writer, self._queue
        if not self._running() or writer is None:
            return
        queue.put_marker(_STOP)
        writer.join(timeout)
        self._pid = self._generation = -1
        if writer.is_alive():
            left = sum(1 for item in queue.take() if isinstance(item, _RECORDS))
            queue.put_marker(_STOP)  # the stuck writer ends once its sink answers
            if left:
                self._dropped(NOT_FLUSHED, left)
                log.warning("payload log: %d records not delivered within %g s at exit", left, timeout)

    # -- the writer ------------------------------------------------------------------------------

    def _running(self) -> bool:
        writer = self._writer
        return self._pid == os.getpid() and writer is not None and writer.is_alive()

    def _start(self) -> None:
        """Start this process's writer (again after a fork: threads do not survive one)."""
        with self._start_lock:
            if self._pid == os.getpid():
                self._generation = _forks
                return
            _watch_forks()
            queue = self._queue = _Queue()
            self._writer = threading.Thread(target=self._write_forever, args=(queue,), name="iris-payload-log",
                                            daemon=True)
            self._writer.start()
            self._pid = os.getpid()
            self._generation = _forks

    def _write_forever(self, queue: _Queue) -> None:
        sink = self._make_sink()
        try:
            while True:
                queue.wake.wait(WRITE_INTERVAL)
                queue.wake.clear()
                if self._write_queued(sink, queue.take()):
                    return
        finally:
            sink.close()

    def _write_queued(self, sink: Any, items: list[Any]) -> bool:
        """Deliver ``items`` in order, answering flush markers on the way; True if the stop marker was among them.

        Records queued behind the stop marker (by a request still finishing) are delivered too.
        """
        batch: list[Entry | bytes] = []
        stop = False
        for item in items:
            if isinstance(item, _RECORDS):
                batch.append(item)
                continue
            self._deliver(sink, batch)
            batch = []
            if item is _STOP:
                stop = True
            else:
                item.set()
        self._deliver(sink, batch)
        return stop

    def _deliver(self, sink: Any, batch: list[Entry | bytes]) -> None:
        if not batch:
            return
        try:
            failed = sink.write(batch)
        except Exception:  # noqa: BLE001 - a sink's bug must not kill the writer; the records are counted
            log.exception("payload log: the sink failed")
            failed = len(batch)
        if failed:
            self._dropped(SINK_ERROR, failed)


def _nbytes(array: Any) -> int:
    return int(getattr(array, "nbytes", 0))
