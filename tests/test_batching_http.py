"""Micro-batching wired into the app: config, answers identical to no batching, reloads, real servers."""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import KNOWN_ROWS, ROOT, create_app_for_test, free_port, run_server
from sklearn.datasets import load_iris

from iris_service.runtime.batching import BatchedModel
from iris_service.settings import ConfigError

ROWS = np.resize(load_iris(return_X_y=True)[0], (96, 4)).tolist()


def _registry(app):
    return app.extensions["iris_service"].dataplane


def _answers(post, rows: list[list[float]]) -> list[dict]:
    """One single-row request per row, 16 at a time; every answer in row order."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(post, rows))


@pytest.fixture
def forest_config(forest_artifact: Path) -> dict[str, object]:
    return {"TESTING": True, "MODEL_PATH": str(forest_artifact)}


@pytest.fixture
def unbatched_answers(forest_config: dict[str, object]) -> list[dict]:
    """What the forest answers for ROWS without batching (in-process, one at a time)."""
    client = create_app_for_test(forest_config).test_client()
    return [client.post("/predict", json={"features": row}).get_json() for row in ROWS]


@pytest.mark.parametrize(
    "setting,batched",
    [
        ("off", False),
        ("on", True),
        (True, True),
        ({"mode": "on", "max_batch_size": 8, "max_latency_ms": 1}, True),
        ({"mode": "off"}, False),
    ],
)
def test_batching_setting_decides_the_served_model(iris_artifact: Path, setting, batched: bool) -> None:
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "BATCHING": setting})
    model = _registry(app).model()
    assert isinstance(model, BatchedModel) is batched
    assert (model.name, model.version, model.class_names) == ("iris", "1", ("setosa", "versicolor", "virginica"))


def test_batching_from_the_environment(iris_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRIS_SERVICE_BATCHING", "on")
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact)})
    assert isinstance(_registry(app).model(), BatchedModel)


def test_auto_leaves_a_cheap_model_unbatched(iris_artifact: Path) -> None:
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "BATCHING": "auto"})
    assert not isinstance(_registry(app).model(), BatchedModel)


@pytest.mark.parametrize(
    "setting,message",
    [
        ("sometimes", "BATCHING must be one of off, on, auto"),
        ({"mode": "on", "max_batch_size": 0}, "max_batch_size must be a positive integer"),
        ({"mode": "on", "max_latency_ms": -1}, "max_latency_ms must be a number from 0 to 1000"),
        ({"mode": "on", "size": 3}, "unknown key(s): size"),
        (5, "BATCHING must be a string or a mapping"),
    ],
)
def test_bad_batching_settings_stop_start_up(iris_artifact: Path, setting, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        create_app_for_test({"MODEL_PATH": str(iris_artifact), "BATCHING": setting})


def test_concurrent_requests_get_the_answers_of_no_batching(
    forest_config: dict[str, object], unbatched_answers: list[dict]
) -> None:
    app = create_app_for_test({**forest_config, "BATCHING": {"mode": "on", "max_latency_ms": 5}})
    client_local = app.test_client

    def post(row: list[float]) -> dict:
        response = client_local().post("/predict", json={"features": row})
        assert response.status_code == 200
        return response.get_json()

    assert _answers(post, ROWS) == unbatched_answers


def test_a_bad_request_never_reaches_the_batcher(iris_artifact: Path) -> None:
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "BATCHING": "on"})
    model = _registry(app).model()
    calls: list[int] = []
    inner = model.batcher._predict

    def counting(x):
        calls.append(len(x))
        return inner(x)

    model.batcher._predict = counting
    client = app.test_client()
    bad = client.post("/predict", json={"features": [1, "two", 3, 4]})
    assert bad.status_code == 422
    assert bad.get_json()["errors"] == {"json": {"features": {"1": ["Must be a number, not a string."]}}}
    assert calls == []
    row, index, label = KNOWN_ROWS[2]
    good = client.post("/predict", json={"features": row}).get_json()
    assert (good["prediction"], good["label"], calls) == (index, label, [1])


def test_reload_swaps_the_batcher_and_closes_the_old_one(iris_artifact: Path) -> None:
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "BATCHING": "on"})
    registry = _registry(app)
    old = registry.model()
    registry.load("iris")
    new = registry.model()
    assert isinstance(new, BatchedModel) and new is not old
    assert old.batcher.closed and not new.batcher.closed
    # A request that took the old model before the swap is still answered by it.
    x = np.array([KNOWN_ROWS[1][0]])
    assert old.predict(x).classes.tolist() == [KNOWN_ROWS[1][1]]
    app.extensions["iris_service"].dataplane.close()
    assert new.batcher.closed


@pytest.mark.server
def test_waitress_with_batching_answers_as_without(
    live_server, forest_artifact: Path, unbatched_answers: list[dict]
) -> None:
    env = {"IRIS_SERVICE_MODEL_PATH": str(forest_artifact), "IRIS_SERVICE_BATCHING": "on"}
    with live_server(env, ["--threads", "8"]) as base, requests.Session() as session:
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=16)
        session.mount("http://", adapter)

        def post(row: list[float]) -> dict:
            response = session.post(f"{base}/predict", json={"features": row}, timeout=30)
            assert response.status_code == 200
            return response.json()

        assert _answers(post, ROWS) == unbatched_answers


@pytest.mark.server
@pytest.mark.skipif(sys.platform == "win32", reason="gunicorn runs on POSIX only")
def test_gunicorn_gthread_with_batching_answers_as_without(
    forest_artifact: Path, tmp_path: Path, unbatched_answers: list[dict]
) -> None:
    """Two preloaded workers (forked after the batcher exists) and four threads each."""
    port = free_port()
    env = {
        "IRIS_SERVICE_ENV": "production",
        "IRIS_SERVICE_MODEL_PATH": str(forest_artifact),
        "IRIS_SERVICE_INSTANCE_PATH": str(tmp_path / "instance"),
        "IRIS_SERVICE_BATCHING": "on",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "4",
    }
    args = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    with run_server(args, env, port, cwd=ROOT, output=tmp_path / "gunicorn.log") as (base, _proc):

        def post(row: list[float]) -> dict:
            response = requests.post(f"{base}/predict", json={"features": row}, timeout=30)
            assert response.status_code == 200
            return response.json()

        assert _answers(post, ROWS) == unbatched_answers
