"""A Flask developer mounts our blueprints in their own app, under a prefix."""
from __future__ import annotations

import numpy as np
import orjson
from flask import Flask

from iris_service import ModelStore
from iris_service.rest.blueprints import health, predictions, v2


def host_app(artifact, *blueprints) -> Flask:
    """A plain Flask app (Flask's own JSON provider) with our model store and ``blueprints`` under /ml."""
    host = Flask("host_app")
    host.config["MODEL_PATH"] = str(artifact)
    ModelStore().init_app(host)
    for blueprint in blueprints:
        host.register_blueprint(blueprint.blp, url_prefix="/ml")
    return host


def test_blueprints_mounted_under_ml_next_to_host_routes(iris_artifact):
    host = host_app(iris_artifact, predictions, health)

    @host.get("/")
    def home():
        return {"host": "own route"}

    client = host.test_client()

    response = client.post("/ml/predict", json={"features": [5.1, 3.5, 1.4, 0.2]})
    assert response.status_code == 200
    assert response.get_json()["prediction"] == 0
    assert response.get_json()["label"] == "setosa"
    assert client.get("/ml/health").get_json()["status"] == "API is running!"
    assert client.get("/").get_json() == {"host": "own route"}
    assert client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).status_code == 404

    bad = client.post("/ml/predict", json={"features": [1, 2, 3]})
    assert bad.status_code == 422
    assert bad.get_json()["errors"]["json"]["features"][0].startswith("Expected 4 features")
    wrong_type = client.post("/ml/predict", data="x", content_type="text/plain")
    assert wrong_type.status_code == 415
    assert wrong_type.get_json()["code"] == 415


def test_large_answers_do_not_depend_on_the_host_apps_json_provider(iris_artifact):
    """Batches are written as orjson fragments and numpy arrays, which Flask's default
    JSON provider (the host's) cannot write: our views answer through our own writer."""
    client = host_app(iris_artifact, predictions, v2).test_client()
    rows = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]] * 50  # past the 64 rows where fragments start

    batch = client.post("/ml/predict", json={"instances": rows})
    assert batch.status_code == 200, batch.get_data()[:300]
    assert [p["label"] for p in batch.get_json()["predictions"]] == ["setosa", "virginica"] * 50

    tensor = {"name": "input-0", "shape": [100, 4], "datatype": "FP64", "data": rows}
    outputs = [{"name": "predict_proba"}, {"name": "predict", "parameters": {"binary_data": True}}]
    infer = client.post("/ml/v2/models/iris/infer", json={"inputs": [tensor], "outputs": outputs})
    assert infer.status_code == 200, infer.get_data()[:300]
    length = int(infer.headers["Inference-Header-Content-Length"])
    header = orjson.loads(infer.get_data()[:length])
    assert header["outputs"][0]["shape"] == [100, 3] and len(header["outputs"][0]["data"]) == 300
    assert infer.get_data()[length:] == bytes(np.array([0, 2] * 50, dtype="<i8"))


def _process_state() -> dict[str, object]:
    """What a library must not change in its host's process: GC, loggers, threads, exit hooks."""
    import atexit
    import gc
    import logging
    import threading

    # A logger a module creates at import (logging.getLogger(name)) is NOTSET, handler-less and
    # propagating: only configured ones are compared, so first imports during the test do not count.
    loggers = {
        name: (logger.level, tuple(logger.handlers), logger.propagate)
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
        and (logger.level, logger.handlers, logger.propagate) != (logging.NOTSET, [], True)
    }
    return {
        "gc_threshold": gc.get_threshold(),
        "gc_frozen": gc.get_freeze_count(),
        "root": (logging.root.level, tuple(logging.root.handlers)),
        "loggers": loggers,
        "threads": sorted(t.name for t in threading.enumerate()),
        "atexit": atexit._ncallbacks(),
    }


def test_mounting_our_blueprints_leaves_the_host_process_alone(iris_artifact, monkeypatch):
    """GC thresholds, frozen objects, logger levels and handlers, threads and exit hooks are the host's."""
    import logging

    from iris_service.rest.middleware.request_log import LOGGER_NAME

    monkeypatch.setenv("IRIS_SERVICE_GC_THRESHOLD", "[1000, 5, 5]")
    logging.getLogger(LOGGER_NAME)  # exists before, so its level and handlers are compared
    before = _process_state()
    client = host_app(iris_artifact, predictions, health, v2).test_client()
    assert client.post("/ml/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).get_json()["prediction"] == 0
    assert client.get("/ml/health").status_code == 200
    assert _process_state() == before


def test_the_full_app_leaves_the_process_alone_too(iris_artifact):
    """create_app itself has no process-wide effect; the servers' entry points do (cli/process.py)."""
    from iris_service import create_app

    before = _process_state()
    app = create_app({"ENV_NAME": "production", "MODEL_PATH": str(iris_artifact)})
    assert app.test_client().post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).status_code == 200
    assert _process_state() == before
