"""Adaptive micro-batcher in front of a model runtime (threads and a queue, no web framework).

When many request threads each ask for one row, merging their arrays into one
``predict`` call amortises its fixed cost; the batcher does the merging and
hands every caller exactly its own rows back. ``batch_policy`` decides when.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .batch_policy import BatchingSettings, measure_call_costs, should_batch
from .prediction import Model, Prediction

__all__ = ["BatchedModel", "BatcherClosed", "MicroBatcher", "batched", "split_prediction"]


class BatcherClosed(RuntimeError):
    """The batcher was closed (shut-down, or its model was replaced by a reload)."""



def split_prediction(prediction: Prediction, sizes: Sequence[int]) -> list[Prediction]:
    """Cut a merged batch's prediction into one prediction per caller, by rows.

    Every non-None array field is sliced; anything else (a version string,
    say) is copied as is. A field whose length is not the batch's row count
    means the model broke the one-output-per-row contract, so it raises.
    """
    total = sum(sizes)
    arrays = {
        f.name: value
        for f in dataclasses.fields(prediction)
        if isinstance(value := getattr(prediction, f.name), np.ndarray)
    }
    for name, value in arrays.items():
        if value.ndim == 0 or value.shape[0] != total:
            raise ValueError(f"prediction field {name!r} has shape {value.shape}, expected {total} rows")
    parts: list[Prediction] = []
    start = 0
    for size in sizes:
        stop = start + size
        parts.append(dataclasses.replace(prediction, **{n: v[start:stop] for n, v in arrays.items()}))
        start = stop
    return parts


class _Pending:
    """One caller's array and the slot its answer lands in."""

    __slots__ = ("done", "error", "result", "rows", "x")

    def __init__(self, x: npt.NDArray[np.float64]) -> None:
        self.x = x
        self.rows = int(x.shape[0])
        self.done = threading.Event()
        self.result: Prediction | None = None
        self.error: BaseException | None = None


class MicroBatcher:
    """Merge concurrent ``predict`` calls into few model calls.

    One daemon worker takes the oldest waiting request and gathers more until
    ``max_batch_size`` rows are queued, as many requests as the previous batch
    held have joined, or ``max_latency_ms`` has passed since the first one was
    queued. Waiting for about the previous batch's count is what makes it
    adaptive: a lone caller (previous batch of one) runs at once, while under
    steady concurrency the worker waits just long enough for the callers it has
    just answered to come back, instead of alternating a batch of one with a
    batch of everyone else. The count grows at once and shrinks by one per
    batch, so one batch cut short by the latency limit does not fix the size.
    """

    def __init__(
        self,
        predict: Callable[[npt.NDArray[np.float64]], Prediction],
        *,
        max_batch_size: int = 64,
        max_latency_ms: float = 2.0,
        name: str = "model",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_latency_ms < 0:
            raise ValueError("max_latency_ms must not be negative")
        self._predict = predict
        self._max_rows = max_batch_size
        self._max_wait_s = max_latency_ms / 1000.0
        self.name = name
        self._cond = threading.Condition()
        self._queue: deque[_Pending] = deque()
        self._closed = False
        self._expected = 1
        self._start_worker()

    def _start_worker(self) -> None:
        # Remember the process: a fork (gunicorn --preload) copies the batcher
        # but not its thread, so a child starts its own on first use.
        self._pid = os.getpid()
        self._worker = threading.Thread(target=self._run, name=f"micro-batcher-{self.name}", daemon=True)
        self._worker.start()

    def predict(self, x: npt.NDArray[np.float64]) -> Prediction:
        """Predict ``x`` (one request's rows), possibly merged with other callers'.

        Blocks until this caller's rows are predicted; an exception raised by
        the model for these rows is re-raised here, in the caller's thread.
        """
        if x.ndim != 2:
            raise ValueError(f"expected a 2-D array, got {x.ndim} dimension(s)")
        pending = _Pending(x)
        with self._cond:
            # Checked under the lock so close() cannot slip in between the
            # check and the append and leave this caller unanswered.
            if self._closed:
                raise BatcherClosed(f"micro-batcher {self.name!r} is closed")
            if self._pid != os.getpid():
                self._start_worker()
            self._queue.append(pending)
            self._cond.notify()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting requests, answer every queued one, join the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._pid == os.getpid():
            self._worker.join(timeout)

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the worker (a gauge for metrics)."""
        with self._cond:
            return len(self._queue)

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self._closed

    def _run(self) -> None:
        batch: list[_Pending] = []
        try:
            while True:
                batch = self._gather()
                if not batch:
                    return
                self._answer(batch)
                # Grow at once, shrink by one: a batch cut short by the latency
                # limit must not lock the batcher into that size for good.
                self._expected = max(len(batch), self._expected - 1)
        finally:
            # Only a bug in the batcher itself gets here with callers still
            # waiting; answer them rather than leave their threads hung.
            with self._cond:
                self._closed = True
                stranded = [*batch, *self._queue]
                self._queue.clear()
            for pending in stranded:
                if not pending.done.is_set():
                    pending.error = RuntimeError(f"micro-batcher {self.name!r} worker stopped")
                    pending.done.set()

    def _gather(self) -> list[_Pending]:
        """Wait for work and return the next batch; empty once closed and drained."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return []
                self._cond.wait()
            first = self._queue.popleft()
            batch = [first]
            rows = first.rows
            if rows >= self._max_rows:
                return batch  # an oversize request runs alone and never waits
            deadline = time.monotonic() + self._max_wait_s
            while True:
                while self._queue and rows + self._queue[0].rows <= self._max_rows:
                    item = self._queue.popleft()
                    batch.append(item)
                    rows += item.rows
                if (
                    rows >= self._max_rows
                    or self._queue  # the next request does not fit: this batch is full
                    or len(batch) >= self._expected
                    or self._closed
                ):
                    return batch
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return batch
                self._cond.wait(remaining)

    def _answer(self, batch: list[_Pending]) -> None:
        """Predict a batch in one call, or each request alone if that call fails."""
        if len(batch) > 1:
            try:
                merged = self._predict(np.concatenate([p.x for p in batch]))
                parts = split_prediction(merged, [p.rows for p in batch])
            except BaseException:
                pass  # someone's rows are bad: find out whose, one by one below
            else:
                for pending, part in zip(batch, parts, strict=True):
                    pending.result = part
                    pending.done.set()
                return
        for pending in batch:
            try:
                pending.result = self._predict(pending.x)
            except BaseException as exc:
                # Whatever the model raises belongs to the caller's thread, as
                # it would without the batcher; the worker itself must live on.
                pending.error = exc
            pending.done.set()


class BatchedModel:
    """A runtime model whose ``predict`` goes through its own micro-batcher.

    Everything else (name, version, manifest, class names...) is the model's,
    so codecs and blueprints cannot tell the difference. A request that took
    this model just before a reload swapped it out finds the batcher closed and
    predicts directly: the old model still answers it, as without batching.
    """

    def __init__(self, model: Model, settings: BatchingSettings) -> None:
        self.model = model
        self.batcher = MicroBatcher(
            model.predict,
            max_batch_size=settings.max_batch_size,
            max_latency_ms=settings.max_latency_ms,
            name=model.name,
        )

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not set above: the wrapped model's.
        if name == "model":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.model, name)

    def predict(self, x: npt.NDArray[np.float64]) -> Prediction:
        try:
            return self.batcher.predict(x)
        except BatcherClosed:
            return self.model.predict(x)

    def close(self, timeout: float = 5.0) -> None:
        """Answer what is queued, then stop the batcher's thread."""
        self.batcher.close(timeout)


def batched(model: Model, settings: BatchingSettings, sample: npt.NDArray[np.float64] | None = None) -> Model:
    """``model`` behind a batcher when ``settings`` say so (``auto``: when it pays on ``sample``)."""
    if settings.mode == "off":
        return model
    if settings.mode == "auto":
        if sample is None:
            return model
        costs = measure_call_costs(model.predict, sample)
        if not should_batch(costs.per_call_s, costs.per_row_s):
            return model
    return BatchedModel(model, settings)
