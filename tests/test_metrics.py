"""Metrics: exact counts after known traffic, per-app registries, multiprocess aggregation."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests
from conftest import create_app_for_test
from flask import Flask, current_app, g, request
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LinearRegression

from iris_service import training
from iris_service.artifacts import describe_estimator, dump_joblib, write_artifact
from iris_service.rest.middleware.metrics import UNMATCHED_ENDPOINT, Metrics, NullMetrics
from iris_service.rest.state import EXTENSION_KEY, RESULT
from iris_service.runtime import Prediction
from iris_service.serving import InferResult

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("setosa", "versicolor", "virginica")


def noted(name: str, version: str, classes: list[int]) -> None:
    """What ``rest.state.infer`` notes on ``g`` after the data plane answered: the result."""
    model = SimpleNamespace(name=name, version=version, class_names=CLASSES)
    result = InferResult(model, len(classes), Prediction(classes=np.array(classes, dtype=np.int64)), {})
    setattr(g, RESULT, result)


def make_app(**config: object) -> Flask:
    """A stand-in for the REST layer: /predict notes a data plane result the way ``state.infer`` does."""
    app = Flask(__name__)
    app.config.update({"TESTING": True, **config})
    Metrics().init_app(app)

    @app.post("/predict")
    def predict() -> dict[str, object]:
        rows = request.get_json()["instances"]
        if any(label not in range(3) for label in rows):
            return {"error": "bad row"}, 400
        noted("iris", "1", rows)
        return {"predictions": [CLASSES[label] for label in rows]}

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/in-flight")
    def in_flight() -> dict[str, float]:
        registry = current_app.extensions[EXTENSION_KEY].metrics.registry
        return {"value": sample(generate_latest(registry).decode(), "iris_http_requests_in_flight")}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    @app.errorhandler(RuntimeError)
    def on_error(exc: RuntimeError) -> tuple[dict[str, str], int]:
        return {"error": str(exc)}, 500

    return app


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, keyed by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(text: str, metric: str, /, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (never incremented)."""
    return samples(text).get((metric, frozenset(labels.items())), 0.0)


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_known_traffic_gives_exact_counts() -> None:
    client = make_app().test_client()
    for batch in ([0], [0, 1, 2, 2], [2, 2]):
        assert client.post("/predict", json={"instances": batch}).status_code == 200
    assert client.post("/predict", json={"instances": [0, 7]}).status_code == 400
    for item_id in (1, 2, 3):
        assert client.get(f"/items/{item_id}").status_code == 200
    assert client.get("/nowhere").status_code == 404
    assert client.get("/boom").status_code == 500
    client.get("/metrics")  # scrapes are not counted

    text = scrape(client)
    requests_total = "iris_http_requests_total"
    assert sample(text, requests_total, endpoint="/predict", method="POST", status="200") == 3
    assert sample(text, requests_total, endpoint="/predict", method="POST", status="400") == 1
    # The url rule, not the raw path: three ids, one series.
    assert sample(text, requests_total, endpoint="/items/<int:item_id>", method="GET", status="200") == 3
    assert sample(text, requests_total, endpoint=UNMATCHED_ENDPOINT, method="GET", status="404") == 1
    assert sample(text, requests_total, endpoint="/boom", method="GET", status="500") == 1
    assert not any(
        labels and dict(labels).get("endpoint") == "/metrics" for _, labels in samples(text)
    )
    latency = "iris_http_request_duration_seconds"
    assert sample(text, f"{latency}_count", endpoint="/predict", method="POST", status="200") == 3
    assert sample(text, f"{latency}_bucket", endpoint="/predict", method="POST", status="200", le="+Inf") == 3
    assert 0 < sample(text, f"{latency}_sum", endpoint="/predict", method="POST", status="200") < 5

    # Predictions: successful requests only, one count per row and class.
    predictions = "iris_predictions_total"
    assert sample(text, predictions, model="iris", version="1", **{"class": "setosa"}) == 2
    assert sample(text, predictions, model="iris", version="1", **{"class": "versicolor"}) == 1
    assert sample(text, predictions, model="iris", version="1", **{"class": "virginica"}) == 4
    batch = "iris_prediction_batch_size"
    assert sample(text, f"{batch}_count", model="iris", version="1") == 3
    assert sample(text, f"{batch}_sum", model="iris", version="1") == 7
    assert sample(text, f"{batch}_bucket", model="iris", version="1", le="1.0") == 1
    assert sample(text, f"{batch}_bucket", model="iris", version="1", le="2.0") == 2
    assert sample(text, "iris_http_requests_in_flight") == 0


def test_in_flight_counts_the_current_request() -> None:
    client = make_app().test_client()
    assert client.get("/in-flight").get_json() == {"value": 1.0}
    assert sample(scrape(client), "iris_http_requests_in_flight") == 0


def test_unknown_methods_share_one_label() -> None:
    client = make_app().test_client()
    assert client.open("/predict", method="BREW").status_code == 405
    assert client.open("/predict", method="PROPFIND").status_code == 405
    text = scrape(client)
    assert sample(text, "iris_http_requests_total", endpoint=UNMATCHED_ENDPOINT, method="other", status="405") == 2


def test_class_counts_of_a_batch_come_from_the_results_class_indices() -> None:
    """A batch's classes are counted from the prediction's class indices and the model's class names."""
    app = make_app()

    @app.post("/core-predict")
    def core_predict() -> dict[str, str]:
        noted("iris", "2", [2, 0, 2, 2, 0])
        return {}

    client = app.test_client()
    client.post("/core-predict")
    text = scrape(client)
    assert sample(text, "iris_predictions_total", model="iris", version="2", **{"class": "setosa"}) == 2
    assert sample(text, "iris_predictions_total", model="iris", version="2", **{"class": "virginica"}) == 3
    assert sample(text, "iris_predictions_total", model="iris", version="2", **{"class": "versicolor"}) == 0


def test_model_loads_and_info() -> None:
    app = make_app()
    metrics = app.extensions[EXTENSION_KEY].metrics
    metrics.model_loaded("iris", "1", "1.5.2", True)
    metrics.model_loaded("iris", "2", "1.5.2", False, reload=True)
    metrics.model_loaded("iris", "2", "1.5.2", True, reload=True)
    metrics.model_unloaded("iris", "1", "1.5.2")

    text = scrape(app.test_client())
    loads = "iris_model_loads_total"
    assert sample(text, loads, model="iris", kind="load", result="success") == 1
    assert sample(text, loads, model="iris", kind="reload", result="failure") == 1
    assert sample(text, loads, model="iris", kind="reload", result="success") == 1
    assert sample(text, "iris_model_info", name="iris", version="2", sklearn_version="1.5.2") == 1
    assert sample(text, "iris_model_info", name="iris", version="1", sklearn_version="1.5.2") == 0
    assert ("iris_model_info", frozenset({("name", "iris"), ("version", "1"), ("sklearn_version", "1.5.2")})) in samples(text)


def test_two_apps_in_one_process_keep_their_own_counts() -> None:
    first, second = make_app().test_client(), make_app().test_client()
    first.post("/predict", json={"instances": [0]})
    first.post("/predict", json={"instances": [1]})
    second.post("/predict", json={"instances": [2]})
    labels = {"endpoint": "/predict", "method": "POST", "status": "200"}
    assert sample(scrape(first), "iris_http_requests_total", **labels) == 2
    assert sample(scrape(second), "iris_http_requests_total", **labels) == 1


def test_metrics_disabled_has_no_route_and_a_no_op_extension() -> None:
    app = make_app(METRICS_ENABLED=False)
    client = app.test_client()
    assert client.post("/predict", json={"instances": [0]}).status_code == 200
    assert client.get("/metrics").status_code == 404
    assert isinstance(app.extensions[EXTENSION_KEY].metrics, NullMetrics)
    app.extensions[EXTENSION_KEY].metrics.model_loaded("iris", "1", "1.5.2", True)


def test_openmetrics_is_served_when_asked_for() -> None:
    client = make_app().test_client()
    client.post("/predict", json={"instances": [0]})
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).endswith("# EOF\n")
    plain = client.get("/metrics")
    assert plain.headers["Content-Type"].startswith("text/plain")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.server
def test_waitress_threads_lose_no_counts(live_server) -> None:
    """Concurrent requests on a real waitress server's thread pool are all counted."""
    rows = [[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4], [6.3, 3.3, 6.0, 2.5]]
    with live_server() as base:
        with ThreadPoolExecutor(max_workers=8) as pool, requests.Session() as session:
            statuses = list(pool.map(
                lambda i: session.post(f"{base}/predict", json={"features": rows[i % 3]}, timeout=10).status_code,
                range(201),
            ))
        assert statuses == [200] * 201
        text = requests.get(f"{base}/metrics", timeout=10).text
    assert sample(text, "iris_http_requests_total", endpoint="/predict", method="POST", status="200") == 201
    for name in ("setosa", "versicolor", "virginica"):
        assert sample(text, "iris_predictions_total", model="iris", version="1", **{"class": name}) == 67
    assert sample(text, "iris_http_requests_in_flight") == 0  # scrapes are not counted


# A process of the multiprocess tests: sends N requests to its own app, or scrapes.
_WORKER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_metrics import make_app
    app = make_app()
    client = app.test_client()
    if sys.argv[1] == "scrape":
        sys.stdout.write(client.get("/metrics").get_data(as_text=True))
    else:
        app.extensions["iris_service"].metrics.model_loaded("iris", "1", "1.5.2", True)
        for i in range(int(sys.argv[1])):
            assert client.post("/predict", json={{"instances": [i % 3]}}).status_code == 200
    """
).format(tests=str(ROOT / "tests"))


def run_worker(arg: str, multiproc_dir: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, arg], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_multiprocess_mode_aggregates_every_process(tmp_path: Path) -> None:
    """Two processes count, a third (another worker) scrapes their sum."""
    multiproc_dir = tmp_path / "metrics"
    multiproc_dir.mkdir()
    run_worker("4", multiproc_dir)
    run_worker("6", multiproc_dir)
    text = run_worker("scrape", multiproc_dir)

    assert sample(text, "iris_http_requests_total", endpoint="/predict", method="POST", status="200") == 10
    assert sample(text, "iris_http_request_duration_seconds_count", endpoint="/predict", method="POST", status="200") == 10
    # Rows 0..3 and 0..5 by i % 3: setosa 2 + 2, versicolor 1 + 2, virginica 1 + 2.
    counts = {c: sample(text, "iris_predictions_total", model="iris", version="1", **{"class": c}) for c in CLASSES}
    assert counts == {"setosa": 4, "versicolor": 3, "virginica": 3}
    assert sample(text, "iris_model_loads_total", model="iris", kind="load", result="success") == 2
    assert sample(text, "iris_model_info", name="iris", version="1", sklearn_version="1.5.2") == 1
    assert sample(text, "iris_http_requests_in_flight") == 0


def test_missing_multiprocess_dir_fails_at_startup(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "absent")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    code = "from flask import Flask\nfrom iris_service.rest.middleware.metrics import Metrics\nMetrics().init_app(Flask('x'))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "PROMETHEUS_MULTIPROC_DIR" in done.stderr and "not a directory" in done.stderr


# -- Label sets known before any traffic (issue 17) ------------------------------------------------

def test_routes_exist_at_zero_on_the_first_scrape() -> None:
    """Prometheus' increase() counts a first burst only if the series was scraped before it, at 0."""
    text = scrape(make_app().test_client())
    assert ("iris_http_requests_total", frozenset(
        {("endpoint", "/items/<int:item_id>"), ("method", "GET"), ("status", "200")})) in samples(text)
    for endpoint, method in (("/predict", "POST"), ("/items/<int:item_id>", "GET"), ("/boom", "GET")):
        labels = {"endpoint": endpoint, "method": method, "status": "200"}
        assert samples(text)[("iris_http_requests_total", frozenset(labels.items()))] == 0
        assert samples(text)[("iris_http_request_duration_seconds_count", frozenset(labels.items()))] == 0
    endpoints = {dict(labels).get("endpoint") for _, labels in samples(text)}
    assert "/metrics" not in endpoints and "/static/<path:filename>" not in endpoints
    assert not any(dict(labels).get("method") in ("HEAD", "OPTIONS") for _, labels in samples(text))


def test_each_loaded_models_classes_exist_at_zero(iris_artifact, tmp_path, monkeypatch) -> None:
    """Each class of a classifier, and a regressor's one '' series, before any prediction."""
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    regressor = tmp_path / "reg.joblib"
    x = np.arange(20, dtype=float).reshape(10, 2)
    estimator = LinearRegression().fit(x, x.sum(axis=1))
    write_artifact(regressor, dump_joblib(estimator),
                   describe_estimator(estimator, name="reg", version="3", fmt="joblib", feature_names=["a", "b"]))
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "MODELS": {"reg": str(regressor)}})
    text = scrape(app.test_client())
    for cls in CLASSES:
        assert samples(text)[("iris_predictions_total",
                              frozenset({("model", "iris"), ("version", "1"), ("class", cls)}))] == 0
    assert samples(text)[("iris_predictions_total",
                          frozenset({("model", "reg"), ("version", "3"), ("class", "")}))] == 0
    assert samples(text)[("iris_prediction_batch_size_count", frozenset({("model", "iris"), ("version", "1")}))] == 0
    assert samples(text)[("iris_http_requests_total", frozenset(
        {("endpoint", "/v2/models/<name>/infer"), ("method", "POST"), ("status", "200")}))] == 0


def test_a_reloaded_versions_classes_exist_at_zero(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    root = tmp_path / "models"
    training.train(root / "iris" / "1" / "model.joblib", kind="logreg", name="iris", version="1")
    client = create_app_for_test({"MODEL_DIR": str(root), "ADMIN_TOKEN": "t0ken"}).test_client()
    scrape(client)
    training.train(root / "iris" / "2" / "model.joblib", kind="logreg", name="iris", version="2")
    assert client.post("/admin/models/iris/reload", headers={"Authorization": "Bearer t0ken"}).status_code == 200
    text = scrape(client)
    for cls in CLASSES:
        assert samples(text)[("iris_predictions_total",
                              frozenset({("model", "iris"), ("version", "2"), ("class", cls)}))] == 0
