"""Operations through the real app: /metrics after known traffic, request ids and log lines."""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
import sklearn
from conftest import KNOWN_ROWS, RequestLogLines, create_app_for_test
from test_metrics import sample, samples

from iris_service.rest.middleware.metrics import UNMATCHED_ENDPOINT, NullMetrics
from iris_service.rest.middleware.request_log import REQUEST_ID_HEADER

ADMIN_TOKEN = "admin-token-for-tests"
SKLEARN = sklearn.__version__
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
SETOSA, VERSICOLOR, VIRGINICA = (row for row, _, _ in KNOWN_ROWS)


@pytest.fixture
def app_config(iris_artifact: Path, tmp_path: Path) -> dict[str, object]:
    # A copy of the artifact, so a test may break it and reload.
    folder = tmp_path / "model"
    folder.mkdir()
    for path in iris_artifact.parent.iterdir():
        shutil.copy(path, folder / path.name)
    return {"TESTING": True, "MODEL_PATH": str(folder / iris_artifact.name), "ADMIN_TOKEN": ADMIN_TOKEN}


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.get_data(as_text=True)


def reload(client, token: str = ADMIN_TOKEN):
    return client.post("/admin/models/iris/reload", headers={"Authorization": f"Bearer {token}"})


# --- /metrics -------------------------------------------------------------------------------


def test_metrics_count_known_traffic(client) -> None:
    for row in (SETOSA, SETOSA, VIRGINICA):
        assert client.post("/predict", json={"features": row}).status_code == 200
    batch = client.post("/predict", json={"instances": [SETOSA, VERSICOLOR, VIRGINICA, VIRGINICA]})
    assert batch.status_code == 200
    v2 = client.post("/v2/models/iris/infer", json={
        "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": [*VERSICOLOR, *SETOSA]}]})
    assert v2.status_code == 200
    assert client.post("/predict", json={"features": [1, 2]}).status_code == 422
    assert client.get("/health/live").status_code == 200
    assert client.get("/nowhere").status_code == 404
    client.get("/metrics")  # scrapes are not counted

    text = scrape(client)
    requests_total = "iris_http_requests_total"
    assert sample(text, requests_total, endpoint="/predict", method="POST", status="200") == 4
    assert sample(text, requests_total, endpoint="/predict", method="POST", status="422") == 1
    assert sample(text, requests_total, endpoint="/v2/models/<name>/infer", method="POST", status="200") == 1
    assert sample(text, requests_total, endpoint="/health/live", method="GET", status="200") == 1
    assert sample(text, requests_total, endpoint=UNMATCHED_ENDPOINT, method="GET", status="404") == 1
    assert not any(dict(labels).get("endpoint") == "/metrics" for _, labels in samples(text))
    latency = "iris_http_request_duration_seconds_count"
    assert sample(text, latency, endpoint="/predict", method="POST", status="200") == 4

    # Rows by predicted class over every protocol: 2 + 1 + 1 setosa, 1 + 1 versicolor, 1 + 2 virginica.
    predicted = {label: sample(text, "iris_predictions_total", model="iris", version="1", **{"class": label})
                 for label in ("setosa", "versicolor", "virginica")}
    assert predicted == {"setosa": 4, "versicolor": 2, "virginica": 3}
    batch_size = "iris_prediction_batch_size"
    assert sample(text, f"{batch_size}_count", model="iris", version="1") == 5
    assert sample(text, f"{batch_size}_sum", model="iris", version="1") == 9
    assert sample(text, f"{batch_size}_bucket", model="iris", version="1", le="1.0") == 3
    assert sample(text, f"{batch_size}_bucket", model="iris", version="1", le="2.0") == 4
    assert sample(text, "iris_http_requests_in_flight") == 0

    assert sample(text, "iris_model_loads_total", model="iris", kind="load", result="success") == 1
    assert sample(text, "iris_model_loads_total", model="iris", kind="reload", result="success") == 0
    assert sample(text, "iris_model_info", name="iris", version="1", sklearn_version=SKLEARN) == 1


def test_an_admin_reload_is_counted_as_a_reload(client) -> None:
    assert reload(client, "wrong").status_code == 401
    response = reload(client)
    assert response.status_code == 200
    assert response.get_json()["version"] == "1"
    text = scrape(client)
    loads = "iris_model_loads_total"
    assert sample(text, loads, model="iris", kind="load", result="success") == 1
    assert sample(text, loads, model="iris", kind="reload", result="success") == 1
    assert sample(text, loads, model="iris", kind="reload", result="failure") == 0
    assert sample(text, "iris_model_info", name="iris", version="1", sklearn_version=SKLEARN) == 1
    assert sample(text, "iris_http_requests_total", endpoint="/admin/models/<name>/reload", method="POST",
                  status="401") == 1


def test_a_failed_reload_is_counted_and_the_old_model_keeps_serving(app, client) -> None:
    Path(app.config["MODEL_PATH"]).write_bytes(b"not the artifact the manifest describes")
    response = reload(client)
    assert response.status_code == 409
    assert client.post("/predict", json={"features": SETOSA}).get_json()["label"] == "setosa"
    text = scrape(client)
    assert sample(text, "iris_model_loads_total", model="iris", kind="reload", result="failure") == 1
    assert sample(text, "iris_model_info", name="iris", version="1", sklearn_version=SKLEARN) == 1


def test_metrics_disabled_answers_404(iris_artifact, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "METRICS_ENABLED": False})
    client = app.test_client()
    assert client.post("/predict", json={"features": SETOSA}).status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.get_json()["code"] == 404
    assert isinstance(app.extensions["iris_service"].metrics, NullMetrics)


# --- request ids and log lines ---------------------------------------------------------------


def test_a_prediction_logs_model_version_and_batch_size(client, log: RequestLogLines) -> None:
    response = client.post("/predict", json={"instances": [SETOSA, VIRGINICA]}, headers={REQUEST_ID_HEADER: "ops-1"})
    assert response.status_code == 200
    assert response.headers[REQUEST_ID_HEADER] == "ops-1"
    record = log.by_id("ops-1")
    assert record["method"] == "POST" and record["path"] == "/predict" and record["status"] == 200
    assert (record["model"], record["model_version"], record["batch_size"]) == ("iris", "1", 2)
    assert record["remote_addr"] == "127.0.0.1"
    assert isinstance(record["duration_ms"], float)


def test_v2_requests_log_their_model_too(client, log: RequestLogLines) -> None:
    body = {"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": SETOSA * 3}]}
    response = client.post("/v2/models/iris/infer", json=body, headers={REQUEST_ID_HEADER: "ops-v2"})
    assert response.status_code == 200
    record = log.by_id("ops-v2")
    assert (record["model"], record["model_version"], record["batch_size"]) == ("iris", "1", 3)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/nowhere", {}, 404),
        ("POST", "/predict", {"data": "5.1,3.5,1.4,0.2", "content_type": "text/plain"}, 415),
        ("POST", "/predict", {"json": {"features": [1, 2]}}, 422),
        ("POST", "/v2/models/iris/infer", {"json": {"inputs": []}}, 400),
        ("POST", "/admin/models/iris/reload", {}, 401),
    ],
)
def test_error_answers_carry_the_request_id(client, log: RequestLogLines, method, path, kwargs, status) -> None:
    rid = f"err-{status}-{path.count('/')}"
    response = client.open(path, method=method, headers={REQUEST_ID_HEADER: rid}, **kwargs)
    assert response.status_code == status
    assert response.is_json
    assert response.headers[REQUEST_ID_HEADER] == rid
    record = log.by_id(rid)
    assert record["status"] == status and record["path"] == path


def test_a_generated_id_is_returned_when_none_is_sent(client, log: RequestLogLines) -> None:
    response = client.get("/health/live", headers={REQUEST_ID_HEADER: "bad id with spaces"})
    rid = response.headers[REQUEST_ID_HEADER]
    assert GENERATED_ID.fullmatch(rid)
    assert log.by_id(rid)["path"] == "/health/live"


def test_an_unexpected_error_answers_500_with_the_logged_request_id(app, log: RequestLogLines, monkeypatch) -> None:
    def broken() -> None:
        raise RuntimeError("the disk is on fire")

    app.add_url_rule("/broken", view_func=broken)
    monkeypatch.setattr(logging.getLogger("iris_service.errors"), "disabled", True)  # its traceback is not the subject
    client = app.test_client()
    response = client.get("/broken", headers={REQUEST_ID_HEADER: "boom-1"})
    assert response.status_code == 500
    assert response.headers[REQUEST_ID_HEADER] == "boom-1"
    body = response.get_json()
    assert body["request_id"] == "boom-1"
    assert "disk" not in response.get_data(as_text=True)
    record = log.by_id("boom-1")
    assert record["status"] == 500 and record["level"] == "ERROR"

    generated = client.get("/broken")
    rid = generated.headers[REQUEST_ID_HEADER]
    assert GENERATED_ID.fullmatch(rid)
    assert generated.get_json()["request_id"] == rid == log.by_id(rid)["request_id"]


def test_client_errors_do_not_carry_the_id_in_the_body(client) -> None:
    body = client.post("/predict", json={"features": [1, 2]}, headers={REQUEST_ID_HEADER: "quiet-1"}).get_json()
    assert "request_id" not in body


def test_no_body_query_or_key_is_logged(iris_artifact, tmp_path, monkeypatch, log: RequestLogLines) -> None:
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "API_KEYS": ["key-0123456789-secret"]})
    client = app.test_client()
    private = [5.123456789, 3.987654321, 1.4242424242, 0.2121212121]
    response = client.post("/predict?api_key=query-secret-42", json={"features": private},
                           headers={"X-API-Key": "key-0123456789-secret"})
    assert response.status_code == 200
    refused = client.post("/predict", json={"features": private}, headers={"X-API-Key": "wrong-key-secret-77"})
    assert refused.status_code == 401
    assert GENERATED_ID.fullmatch(refused.headers[REQUEST_ID_HEADER])
    assert [r["status"] for r in log.records()] == [200, 401]
    logged = "\n".join(log.lines)
    for secret in ("5.123456789", "3.987654321", "query-secret-42", "key-0123456789-secret", "wrong-key-secret-77"):
        assert secret not in logged
