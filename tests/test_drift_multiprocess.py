"""Drift under several workers (PROMETHEUS_MULTIPROC_DIR): every worker's counts reach the one scrape."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import FEATURES, KNOWN_ROWS, ROOT
from prometheus_client.parser import text_string_to_metric_families
from test_drift import drawn_like_training

from iris_service.artifacts import read_manifest

#: A worker script's wait (bounded) until its own histogram file counts ``rows`` per feature.
_OWN_COUNTS = textwrap.dedent(
    """
    import os, time
    from prometheus_client import multiprocess

    def own_counts():
        own = os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], f"histogram_{os.getpid()}.db")
        if not os.path.exists(own):
            return []
        return [s.value for m in multiprocess.MultiProcessCollector.merge([own]) for s in m.samples
                if s.name == "iris_feature_value_count"]

    def own_counts_reach(rows):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            counts = own_counts()
            if counts and min(counts) == rows:
                return True
            time.sleep(0.1)
        return False
    """
)

_WORKER = _OWN_COUNTS + textwrap.dedent(
    """
    import json, sys
    from iris_service import create_app

    artifact, mode = sys.argv[1], sys.argv[2]
    client = create_app({"ENV_NAME": "testing", "MODEL_PATH": artifact}).test_client()
    if mode == "scrape":
        print(client.get("/metrics").get_data(as_text=True))
        sys.exit(0)
    rows = json.loads(sys.stdin.readline())
    assert client.post("/models/iris/predict", json={"instances": rows}).status_code == 200
    # The worker's writer thread publishes within a second; wait (bounded) for its own file to say so.
    if not own_counts_reach(len(rows)):
        sys.exit("drift counts never reached the multiprocess files")
    print(json.dumps(client.get("/models/iris/drift").get_json()), flush=True)
    sys.stdin.readline()  # stay alive until the scrape is done: a dead worker's live gauges are dropped
    """
)


def worker_env(folder: Path) -> dict[str, str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    return env


def start_worker(artifact: Path, folder: Path, rows: np.ndarray) -> tuple[subprocess.Popen, dict]:
    """A worker that served ``rows`` and stays alive (its drift answer read) until its stdin closes."""
    worker = subprocess.Popen([sys.executable, "-c", _WORKER, str(artifact), "work"], env=worker_env(folder),
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    worker.stdin.write(json.dumps(rows.tolist()) + "\n")
    worker.stdin.flush()
    line = worker.stdout.readline()
    assert line, "the worker exited before answering"
    return worker, json.loads(line)


def run_worker(artifact: Path, folder: Path, mode: str, rows: np.ndarray | None = None) -> str:
    env = worker_env(folder)
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, str(artifact), mode], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=90, input=json.dumps(rows.tolist()) if rows is not None else "",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_scrape_sums_every_workers_histogram_and_counter_and_takes_the_largest_psi(
    iris_artifact: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    calm = drawn_like_training(200, seed=1)
    shifted = drawn_like_training(150, seed=2)
    shifted[:, 2] += 3.0
    shifted[:3, 0] = 100.0  # three sepal lengths outside the training range
    started = [start_worker(iris_artifact, folder, rows) for rows in (calm, shifted)]
    try:
        answers = [answer for _, answer in started]
        scraped = run_worker(iris_artifact, folder, "scrape")
    finally:
        for worker, _ in started:
            worker.stdin.close()
            worker.wait(timeout=60)
            worker.stdout.close()
    families = {f.name: f.samples for f in text_string_to_metric_families(scraped)}

    both = np.concatenate((calm, shifted))
    for j, feature in enumerate(FEATURES):
        buckets = [s for s in families["iris_feature_value"]
                   if s.name == "iris_feature_value_bucket" and s.labels["feature"] == feature]
        assert buckets and buckets[-1].labels["le"] == "+Inf"
        assert [b.value for b in buckets] == [float((both[:, j] <= float(b.labels["le"])).sum()) for b in buckets]
        (total,) = [s.value for s in families["iris_feature_value"]
                    if s.name == "iris_feature_value_sum" and s.labels["feature"] == feature]
        assert total == pytest.approx(both[:, j].sum())
    outside = {s.labels["feature"]: s.value for s in families["iris_feature_out_of_range"]}
    schema = read_manifest(iris_artifact).input_schema
    low, high = np.array([f["min"] for f in schema]), np.array([f["max"] for f in schema])
    expected = ((both < low) | (both > high)).sum(axis=0)
    assert outside == {f: float(n) for f, n in zip(FEATURES, expected, strict=True)}
    assert outside["sepal_length"] >= 3 and outside["sepal_width"] == 0
    psi = {s.labels["feature"]: s.value for s in families["iris_feature_psi"]}
    assert psi == {f: pytest.approx(max(a["features"][f]["psi"] for a in answers)) for f in FEATURES}
    assert psi["petal_length"] > 0.25
    assert [(s.labels["model"], s.value) for s in families["iris_model_ready"]] == [("iris", 1.0)]


_LANE_WORKER = _OWN_COUNTS + textwrap.dedent(
    """
    import json, sys
    from iris_service import create_app

    app = create_app({"ENV_NAME": "testing", "MODEL_PATH": sys.argv[1]})
    dispatched = []
    original = app.full_dispatch_request
    app.full_dispatch_request = lambda: dispatched.append(1) or original()
    client = app.test_client()
    predictions = [client.post("/predict", json={"features": row}).get_json()["prediction"]
                   for row in json.loads(sys.argv[2])]
    own_counts_reach(len(predictions))
    print(json.dumps({"predictions": predictions, "dispatched": len(dispatched), "counts": own_counts()}))
    """
)


def test_under_several_workers_the_row_lane_answers_and_starts_the_drift_writer(
    iris_artifact: Path, tmp_path: Path
) -> None:
    """Multiprocess metrics once sent every row through Flask (3x its cost): the drift writer's hook is the lane's too."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    rows = [row for row, _, _ in KNOWN_ROWS]
    done = subprocess.run([sys.executable, "-c", _LANE_WORKER, str(iris_artifact), json.dumps(rows)],
                          env=worker_env(folder), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["predictions"] == [expected for _, expected, _ in KNOWN_ROWS]
    assert answer["dispatched"] == 0  # every row answered by the lane, none by Flask
    assert answer["counts"] == [len(rows)] * len(FEATURES)  # the drift writer ran in this worker
