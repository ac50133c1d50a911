"""MicroBatcher: merged calls, per-caller rows, isolation of failures, draining."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from iris_service.runtime.batch_policy import CallCosts, measure_call_costs, should_batch
from iris_service.runtime.batching import MicroBatcher, split_prediction

try:
    from iris_service.runtime import Prediction
except ImportError:  # the core's runtime is not written yet

    @dataclass(frozen=True)
    class Prediction:  # type: ignore[no-redef]
        """Stand-in with the fields of the core's Prediction."""

        classes: npt.NDArray[np.int64] | None
        probabilities: npt.NDArray[np.float64] | None
        values: npt.NDArray[np.float64] | None


WAIT_S = 10.0


class FakeModel:
    """Answers classes = row sums; records every call; can hold its first call.

    Holding the first call at a gate lets a test queue every other request
    behind it, so what gets merged does not depend on thread timing.
    """

    def __init__(self, *, hold_first: bool = True) -> None:
        self.calls: list[npt.NDArray[np.float64]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        if not hold_first:
            self.gate.set()
        self._lock = threading.Lock()

    def __call__(self, x: npt.NDArray[np.float64]) -> Prediction:
        with self._lock:
            self.calls.append(x.copy())
        self.entered.set()
        if not self.gate.wait(WAIT_S):
            raise TimeoutError("test gate never opened")
        if np.isnan(x).any():
            raise ValueError("NaN in input")
        return Prediction(
            classes=x.sum(axis=1).astype(np.int64),
            probabilities=x[:, :3] / 1000.0,
            values=None,
        )

    @property
    def sizes(self) -> list[int]:
        return [len(c) for c in self.calls]


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.001)


def _rows(i: int, n: int) -> npt.NDArray[np.float64]:
    """Distinct, integer-valued rows for caller i, so row sums identify them."""
    return (i * 100 + np.arange(n * 4, dtype=np.float64)).reshape(n, 4)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=40) as executor:
        yield executor


def _submit_queued(
    batcher: MicroBatcher,
    model: FakeModel,
    pool: ThreadPoolExecutor,
    arrays: list[npt.NDArray[np.float64]],
) -> list[Future[Prediction]]:
    """Submit arrays[0], wait for it to hold the model, then queue the rest behind it."""
    futures = [pool.submit(batcher.predict, arrays[0])]
    assert model.entered.wait(WAIT_S)
    futures += [pool.submit(batcher.predict, a) for a in arrays[1:]]
    _wait_for(lambda: batcher.queue_depth == len(arrays) - 1)
    return futures


def test_concurrent_callers_each_get_their_own_rows(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_size=64, max_latency_ms=5.0)
    arrays = [_rows(i, 1 + i % 3) for i in range(32)]
    try:
        futures = _submit_queued(batcher, model, pool, arrays)
        model.gate.set()
        for x, future in zip(arrays, futures, strict=True):
            result = future.result(WAIT_S)
            np.testing.assert_array_equal(result.classes, x.sum(axis=1).astype(np.int64))
            np.testing.assert_array_equal(result.probabilities, x[:, :3] / 1000.0)
            assert result.values is None
    finally:
        model.gate.set()
        batcher.close()
    assert len(model.calls) < len(arrays)
    assert sum(model.sizes) == sum(len(a) for a in arrays)
    assert max(model.sizes) <= 64


def test_a_failing_request_does_not_fail_its_neighbours(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_size=64, max_latency_ms=5.0)
    arrays = [_rows(i, 2) for i in range(8)]
    arrays[5][1, 2] = np.nan
    try:
        futures = _submit_queued(batcher, model, pool, arrays)
        model.gate.set()
        for i, (x, future) in enumerate(zip(arrays, futures, strict=True)):
            if i == 5:
                with pytest.raises(ValueError, match="NaN"):
                    future.result(WAIT_S)
            else:
                np.testing.assert_array_equal(future.result(WAIT_S).classes, x.sum(axis=1))
    finally:
        model.gate.set()
        batcher.close()
    assert 14 in model.sizes  # the seven queued requests were tried together first


def test_oversize_request_is_predicted_alone(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_size=4, max_latency_ms=5.0)
    big = _rows(99, 10)
    arrays = [_rows(0, 1), _rows(1, 1), big, _rows(2, 1), _rows(3, 2)]
    try:
        futures = _submit_queued(batcher, model, pool, arrays)
        model.gate.set()
        results = [f.result(WAIT_S) for f in futures]
    finally:
        model.gate.set()
        batcher.close()
    np.testing.assert_array_equal(results[2].classes, big.sum(axis=1))
    big_calls = [c for c in model.calls if len(c) > 4]
    assert len(big_calls) == 1
    np.testing.assert_array_equal(big_calls[0], big)
    assert all(len(c) <= 4 for c in model.calls if c is not big_calls[0])


def test_oversize_request_alone_does_not_wait() -> None:
    model = FakeModel(hold_first=False)
    batcher = MicroBatcher(model, max_batch_size=2, max_latency_ms=60_000.0)
    try:
        result = batcher.predict(_rows(1, 5))
    finally:
        batcher.close()
    np.testing.assert_array_equal(result.classes, _rows(1, 5).sum(axis=1))
    assert model.sizes == [5]


def test_close_drains_queued_work_then_refuses(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_size=8, max_latency_ms=5.0)
    arrays = [_rows(i, 1) for i in range(12)]
    try:
        futures = _submit_queued(batcher, model, pool, arrays)
        closing = pool.submit(batcher.close, WAIT_S)
        _wait_for(lambda: batcher.closed)
        with pytest.raises(RuntimeError, match="closed"):
            batcher.predict(_rows(50, 1))
        model.gate.set()
        for x, future in zip(arrays, futures, strict=True):
            np.testing.assert_array_equal(future.result(WAIT_S).classes, x.sum(axis=1))
        closing.result(WAIT_S)
    finally:
        model.gate.set()
        batcher.close()
    assert not batcher._worker.is_alive()
    assert sum(model.sizes) == len(arrays)


def test_predict_after_close_raises() -> None:
    batcher = MicroBatcher(FakeModel(hold_first=False))
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.predict(_rows(0, 1))


def test_lone_caller_is_answered() -> None:
    model = FakeModel(hold_first=False)
    batcher = MicroBatcher(model, max_latency_ms=1.0)
    try:
        for i in range(3):
            np.testing.assert_array_equal(batcher.predict(_rows(i, 1)).classes, _rows(i, 1).sum(axis=1))
    finally:
        batcher.close()
    assert model.sizes == [1, 1, 1]


@pytest.mark.parametrize("shape", [(4,), (1, 2, 4)])
def test_rejects_arrays_that_are_not_2d(shape: tuple[int, ...]) -> None:
    batcher = MicroBatcher(FakeModel(hold_first=False))
    try:
        with pytest.raises(ValueError, match="2-D"):
            batcher.predict(np.zeros(shape))
    finally:
        batcher.close()


def test_base_exceptions_reach_the_caller_and_the_worker_lives_on() -> None:
    def explode(x: npt.NDArray[np.float64]) -> Prediction:
        if x[0, 0] < 0:
            raise SystemExit("model called exit()")
        return Prediction(classes=x.sum(axis=1).astype(np.int64), probabilities=None, values=None)

    batcher = MicroBatcher(explode)
    try:
        with pytest.raises(SystemExit):
            batcher.predict(-_rows(1, 1))
        np.testing.assert_array_equal(batcher.predict(_rows(1, 1)).classes, _rows(1, 1).sum(axis=1))
    finally:
        batcher.close()


def test_split_prediction_slices_every_array_field() -> None:
    merged = Prediction(
        classes=np.arange(6, dtype=np.int64),
        probabilities=np.arange(18, dtype=np.float64).reshape(6, 3),
        values=None,
    )
    parts = split_prediction(merged, [1, 3, 2])
    assert [len(p.classes) for p in parts] == [1, 3, 2]
    np.testing.assert_array_equal(parts[1].classes, [1, 2, 3])
    np.testing.assert_array_equal(parts[2].probabilities, merged.probabilities[4:])
    assert all(p.values is None for p in parts)


def test_split_prediction_rejects_a_wrong_row_count() -> None:
    merged = Prediction(classes=np.arange(5, dtype=np.int64), probabilities=None, values=None)
    with pytest.raises(ValueError, match="expected 6 rows"):
        split_prediction(merged, [3, 3])


@pytest.mark.parametrize(
    ("per_call_s", "per_row_s", "expected"),
    [
        (10e-3, 1e-6, True),  # random forest: every call walks every tree
        (80e-6, 0.1e-6, False),  # logistic regression: a call is cheaper than a hand-off
        (1e-3, 1e-4, False),  # the fixed part is only ten rows' worth
        (1e-3, 0.0, True),
        (0.0, 0.0, False),
    ],
)
def test_should_batch(per_call_s: float, per_row_s: float, expected: bool) -> None:
    assert should_batch(per_call_s, per_row_s) is expected


def test_measure_call_costs_times_one_row_and_many() -> None:
    model = FakeModel(hold_first=False)
    costs = measure_call_costs(model, _rows(0, 3), rows=16, repeats=3)
    assert isinstance(costs, CallCosts)
    assert costs.per_call_s >= 0.0 and costs.per_row_s >= 0.0
    assert set(model.sizes) == {1, 16}
