"""Drift at /metrics, the window's bookkeeping, and the DRIFT_* settings."""
from __future__ import annotations

import gc
import os
import subprocess
import weakref
from pathlib import Path

import numpy as np
import pytest
from conftest import FEATURES, create_app_for_test, free_port, serve_args, server_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from prometheus_client.parser import text_string_to_metric_families
from test_drift import drawn_like_training, serve

from iris_service.artifacts import read_manifest
from iris_service.artifacts.profile import read_profile
from iris_service.serving import drift as drift_module
from iris_service.serving.drift import DriftMonitor, DriftSettings, ModelDrift
from iris_service.settings import ConfigError, load_settings


def scraped(client) -> dict[str, list]:
    """Metric family name -> its samples, from a real scrape."""
    text = client.get("/metrics").get_data(as_text=True)
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


@pytest.fixture
def client(iris_artifact: Path):
    return create_app_for_test({"MODEL_PATH": str(iris_artifact)}).test_client()


def test_each_features_histogram_has_its_training_deciles_as_buckets(client, iris_artifact: Path) -> None:
    rows = drawn_like_training(300)
    serve(client, rows)
    samples = scraped(client)["iris_feature_value"]
    for j, item in enumerate(read_manifest(iris_artifact).input_schema):
        feature = item["name"]
        buckets = [s for s in samples if s.name.endswith("_bucket") and s.labels["feature"] == feature]
        assert [b.labels["le"] for b in buckets] == [repr(d) for d in sorted(set(item["deciles"]))] + ["+Inf"]
        assert [b.labels["model"] for b in buckets] == ["iris"] * len(buckets)
        bounds = [float(b.labels["le"]) for b in buckets]
        assert [b.value for b in buckets] == [float((rows[:, j] <= le).sum()) for le in bounds]
        count = next(s for s in samples if s.name == "iris_feature_value_count" and s.labels["feature"] == feature)
        total = next(s for s in samples if s.name == "iris_feature_value_sum" and s.labels["feature"] == feature)
        assert (count.value, total.value) == (300.0, pytest.approx(rows[:, j].sum()))


def test_out_of_range_counter_and_psi_gauge_at_metrics(client) -> None:
    serve(client, np.array([[100.0, 3.0, 1.0, 0.2]] * 3 + [[5.0, 3.0, 1.0, -1.0]]))
    serve(client, drawn_like_training(200))
    samples = scraped(client)
    outside = {s.labels["feature"]: s.value for s in samples["iris_feature_out_of_range"]}
    assert outside == {"sepal_length": 3.0, "sepal_width": 0.0, "petal_length": 0.0, "petal_width": 1.0}
    answer = client.get("/models/iris/drift").get_json()
    psi = {s.labels["feature"]: s.value for s in samples["iris_feature_psi"]}
    assert psi == {name: pytest.approx(f["psi"]) for name, f in answer["features"].items()}
    assert {s.labels["version"] for s in samples["iris_feature_psi"]} == {answer["version"]}


def test_psi_gauge_is_absent_until_the_window_has_enough_rows(client) -> None:
    serve(client, drawn_like_training(drift_module.MIN_ROWS - 1))
    samples = scraped(client)
    assert "iris_feature_psi" not in samples
    assert len([s for s in samples["iris_feature_out_of_range"]]) == len(FEATURES)


def test_model_ready_gauge_follows_loads_and_unloads(iris_artifact: Path) -> None:
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "ADMIN_TOKEN": "t"})
    client = app.test_client()
    assert [(s.labels, s.value) for s in scraped(client)["iris_model_ready"]] == [
        ({"model": "iris", "version": "1"}, 1.0)]
    app.extensions["iris_service"].dataplane.unload("iris")
    samples = scraped(client)
    assert [(s.labels, s.value) for s in samples["iris_model_ready"]] == [({"model": "iris", "version": ""}, 0.0)]
    assert "iris_feature_value" not in samples


def _tracker(iris_artifact: Path, window: int) -> ModelDrift:
    from iris_service.artifacts import load_verified
    from iris_service.runtime import from_artifact

    model = from_artifact(load_verified(iris_artifact))
    profiles = read_profile(model.manifest)
    assert profiles is not None
    return ModelDrift(model, profiles, window)


def test_a_sum_past_the_largest_float_is_inf_at_the_scrape_not_an_error(client) -> None:
    """Rows near 1.8e308 answer 200; their feature's histogram _sum overflows to +Inf, as Prometheus's own would."""
    huge = [[1.7e308, 3.0, 1.0, 0.2], [1.7e308, 3.0, 1.0, 0.2]]
    assert client.post("/predict", json={"instances": huge}).status_code == 200
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    [total] = [s.value for s in scraped(client)["iris_feature_value"]
               if s.name == "iris_feature_value_sum" and s.labels["feature"] == "sepal_length"]
    assert total == float("inf")


def test_counts_and_window_are_exact_across_wraps_and_oversized_requests(iris_artifact: Path) -> None:
    tracker = _tracker(iris_artifact, 100)
    rng = np.random.default_rng(3)
    sent = []
    for n in (1, 7, 60, 33, 1, 250, 99, 100, 2, 1):
        rows = drawn_like_training(n, seed=int(rng.integers(1 << 30)))
        tracker.observe(rows)
        sent.append(rows)
    everything = np.concatenate(sent)
    snap = tracker.snapshot()
    assert (snap.count, snap.rows) == (len(everything), 100)
    expected_window = everything[-100:]
    for j, feature in enumerate(snap.features):
        assert [c for _, c in feature.buckets] == [int((everything[:, j] <= le).sum()) for le, _ in feature.buckets]
        assert feature.total == pytest.approx(everything[:, j].sum())
        profile = tracker.profiles[j]
        shares = np.bincount(np.searchsorted(profile.edges, expected_window[:, j]), minlength=len(profile.edges) + 1)
        assert feature.psi == pytest.approx(drift_module.psi(shares / 100, profile.shares))


def test_a_request_only_copies_rows_binning_runs_once_per_window(iris_artifact: Path, monkeypatch) -> None:
    """Bounded work: 1,000 single-row requests bin their rows in at most 1000 / window bulk passes."""
    tracker = _tracker(iris_artifact, 250)
    calls = []
    original = ModelDrift._tally
    monkeypatch.setattr(ModelDrift, "_tally", lambda self, x: (calls.append(len(x)), original(self, x)))
    for row in drawn_like_training(1000):
        tracker.observe(row[None, :])
    assert calls == [250, 250, 250, 250]  # each window binned by the request that filled it
    for row in drawn_like_training(10):
        tracker.observe(row[None, :])
    assert calls == [250] * 4  # a part of a window waits for a read...
    assert tracker.snapshot().count == 1010 and calls == [250, 250, 250, 250, 10]  # ... which bins it once
    assert tracker.snapshot().count == 1010 and len(calls) == 5  # nothing queued: nothing binned


def test_rows_observed_from_many_threads_at_once_are_each_counted_once(iris_artifact: Path) -> None:
    """No lock on the request path: rows queued while another thread drains are counted exactly once."""
    import threading

    tracker = _tracker(iris_artifact, 100)
    rows = drawn_like_training(8 * 500, seed=11)
    chunks = np.split(rows, 8)

    def send(chunk: np.ndarray) -> None:
        for row in chunk:
            tracker.observe(row[None, :])

    threads = [threading.Thread(target=send, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snap = tracker.snapshot()
    assert (snap.count, snap.rows) == (4000, 100)
    for j, feature in enumerate(snap.features):
        assert [c for _, c in feature.buckets] == [int((rows[:, j] <= le).sum()) for le, _ in feature.buckets]
        assert feature.total == pytest.approx(rows[:, j].sum())


def test_a_caller_reusing_its_buffer_does_not_change_the_rows_observed(iris_artifact: Path) -> None:
    tracker = _tracker(iris_artifact, 100)
    buffer = drawn_like_training(3)
    expected = buffer.sum(axis=0)
    tracker.observe(buffer)
    buffer[:] = 1e6  # queued rows are a copy
    snap = tracker.snapshot()
    assert [f.total for f in snap.features] == pytest.approx(expected.tolist())
    assert all(f.out_of_range == 0 for f in snap.features)


def test_monitor_keeps_one_window_per_model_object_and_none_when_off(iris_artifact: Path) -> None:
    from iris_service.artifacts import load_verified
    from iris_service.runtime import from_artifact

    first, second = (from_artifact(load_verified(iris_artifact)) for _ in range(2))
    monitor = DriftMonitor(DriftSettings(window=100))
    monitor.observe(first, drawn_like_training(5))
    assert monitor.tracker(first).snapshot().count == 5
    assert monitor.tracker(second).snapshot().count == 0  # a reload's new model starts afresh
    monitor.observe(second, drawn_like_training(3))  # each call finds its own model's window
    monitor.observe(first, drawn_like_training(2))
    assert (monitor.tracker(first).snapshot().count, monitor.tracker(second).snapshot().count) == (7, 3)
    # The monitor holds models weakly, the last one observed included: an unloaded model is freed.
    gone = weakref.ref(second)
    del second
    gc.collect()
    assert gone() is None
    off = DriftMonitor(DriftSettings(enabled=False))
    off.observe(first, drawn_like_training(5))
    assert off.tracker(first) is None


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("DRIFT_WINDOW", 99, "DRIFT_WINDOW must be a whole number of rows from 100 to 1,000,000, not 99."),
        ("DRIFT_WINDOW", 1_000_001, "DRIFT_WINDOW must be a whole number of rows from 100 to 1,000,000, not 1000001."),
        ("DRIFT_WINDOW", "big", "DRIFT_WINDOW must be a whole number of rows from 100 to 1,000,000, not 'big'."),
        ("DRIFT_WINDOW", True, "DRIFT_WINDOW must be a whole number of rows from 100 to 1,000,000, not True."),
        ("DRIFT_ENABLED", "yes", "DRIFT_ENABLED must be true or false, not 'yes'."),
    ],
)
def test_bad_drift_settings_are_refused_naming_the_setting(tmp_path: Path, key, value, message) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"ENV_NAME": "testing", key: value}, tmp_path)
    assert str(caught.value) == message


def test_drift_settings_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("IRIS_SERVICE_DRIFT_WINDOW", "5000")
    monkeypatch.setenv("IRIS_SERVICE_DRIFT_ENABLED", "false")
    settings = load_settings("testing", tmp_path)
    assert (settings["DRIFT_WINDOW"], settings["DRIFT_ENABLED"]) == (5000, False)
    assert DriftSettings.from_config(settings) == DriftSettings(enabled=False, window=5000)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("DRIFT_WINDOW", "10", "DRIFT_WINDOW must be a whole number of rows from 100 to 1,000,000, not 10."),
        ("DRIFT_ENABLED", "maybe", "DRIFT_ENABLED must be true or false, not 'maybe'."),
    ],
)
def test_bad_drift_settings_stop_serve_with_one_line(iris_artifact: Path, tmp_path: Path, key, value, message):
    env = {**os.environ, **server_env(iris_artifact, tmp_path, **{f"IRIS_SERVICE_{key}": value})}
    result = subprocess.run(serve_args(free_port()), env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"Error: {message}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_binning_equals_comparing_each_value_with_every_edge(iris_artifact: Path, data) -> None:
    """The binary search bins every float (edges themselves, NaN, infinities, extremes) as the definition does."""
    tracker = _tracker(iris_artifact, 100)
    edges = [np.asarray(p.edges) for p in tracker.profiles]
    special = st.sampled_from([e for es in edges for e in es.tolist()] + [0.0, -0.0, np.nan, np.inf, -np.inf])
    element = st.one_of(special, st.floats(allow_nan=True, allow_infinity=True))
    x = data.draw(hnp.arrays(np.float64, st.tuples(st.integers(0, 60), st.just(len(edges))), elements=element))
    got = tracker._histogram(x)
    for j, es in enumerate(edges):
        above = (x[:, j, None] > es).sum(axis=1)  # bin k: above exactly k edges (NaN: above none)
        assert got[j, : len(es) + 1].tolist() == np.bincount(above, minlength=len(es) + 1).tolist()
        assert got[j, len(es) + 1:].sum() == 0
