"""The file sink's JSON line made in parts (``Lines``) is ``record_of`` encoded whole, byte for byte.

Request threads format small answers' lines themselves (``payload_log.FORMAT_NOW_ROWS``) and
the writer formats the rest, both with ``Lines``; this proves the fast path over hypothesis's
entries (every float64, names and ids in any text, classifiers with and without labels or
probabilities, regressors, batches on both sides of the array threshold) against the
reference, the record as one dict through orjson.
"""
from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from iris_service.runtime import Prediction
from iris_service.serving.payload_log import FORMAT_NOW_ROWS, PayloadLog, PayloadLogSettings
from iris_service.serving.payload_records import LINE_OPTIONS, Clock, Entry, Lines, record_of

FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=64)
TEXT = st.text(max_size=12)


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    rows = draw(st.sampled_from([1, 2, 3, FORMAT_NOW_ROWS - 1, FORMAT_NOW_ROWS, 70]))
    features = draw(st.integers(1, 5))
    x = draw(hnp.arrays(np.float64, (rows, features), elements=FLOATS))
    regressor = draw(st.booleans())
    if regressor:
        prediction = Prediction(values=draw(hnp.arrays(np.float64, (rows,), elements=FLOATS)))
        names = None
    else:
        n_classes = draw(st.integers(2, 4))
        names = draw(st.none() | st.lists(TEXT, min_size=n_classes, max_size=n_classes).map(tuple))
        probabilities = draw(st.none() | hnp.arrays(np.float64, (rows, n_classes),
                                                    elements=st.floats(0, 1, width=64)))
        prediction = Prediction(classes=draw(hnp.arrays(np.int64, (rows,), elements=st.integers(0, n_classes - 1))),
                                probabilities=probabilities)
    model = SimpleNamespace(name=draw(TEXT), version=draw(TEXT | st.integers(0, 10**12)), class_names=names)
    when = draw(st.floats(0, 4_102_444_800, width=64))  # up to 2100
    return Entry(draw(TEXT), when, model, x, prediction, 0)


@settings(max_examples=400, deadline=None)
@given(entries())
def test_a_line_made_in_parts_is_the_record_encoded_whole(entry: Entry) -> None:
    expected = orjson.dumps(record_of(entry, Clock()), option=LINE_OPTIONS)
    assert Lines()(entry) == expected
    assert json.loads(expected)["request_id"] == entry.request_id


def test_lines_follow_the_model_when_another_one_answers() -> None:
    """A reload (a new model object) or a second model gets its own name and version, never the last one's."""
    lines = Lines()
    x, prediction = np.array([[5.1, 3.5, 1.4, 0.2]]), Prediction(classes=np.array([0]))
    first = SimpleNamespace(name="iris", version="1", class_names=("setosa", "versicolor", "virginica"))
    second = SimpleNamespace(name="forest", version="7", class_names=None)
    for model in (first, second, first):
        record = json.loads(lines(Entry("r", 1.5, model, x, prediction, 0)))
        assert (record["model"], record["version"]) == (model.name, model.version)


def test_a_clock_shared_by_threads_gives_each_time_its_own_second() -> None:
    """Request threads share one clock: each text must name its own time's second, never a neighbour's."""
    clock, failures = Clock(), []

    def stamp(base: int) -> None:
        for i in range(2_000):
            t = base + i + 0.25
            text = clock(t)
            if text != Clock()(t):
                failures.append((t, text))

    threads = [threading.Thread(target=stamp, args=(1_700_000_000 + k * 7,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []


def test_small_answers_are_lines_when_queued_and_large_ones_are_formatted_by_the_writer(tmp_path) -> None:
    """Both sides of FORMAT_NOW_ROWS reach the file as the same records, in order."""
    log = PayloadLog(PayloadLogSettings(target=str(tmp_path / "p.jsonl")))
    model = SimpleNamespace(name="iris", version="1", class_names=("a", "b"))
    sent = []
    for rows in (1, FORMAT_NOW_ROWS - 1, FORMAT_NOW_ROWS, 200, 2):
        x = np.arange(rows * 2, dtype=np.float64).reshape(rows, 2) / 3
        prediction = Prediction(classes=np.arange(rows) % 2, probabilities=np.full((rows, 2), 0.5))
        log.record(f"id-{rows}", SimpleNamespace(model=model, rows=rows, x=x, prediction=prediction))
        sent.append((f"id-{rows}", x.tolist(), ["a", "b"] * (rows // 2) + ["a"] * (rows % 2)))
    log.close()
    written = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [(r["request_id"], r["inputs"], r["outputs"]["predictions"]) for r in written] == sent
    assert all(r["outputs"]["classes"] == ["a", "b"] for r in written)
