"""Payload logs as CloudEvents to a real receiver on 127.0.0.1; slow and dead receivers never touch a request."""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from conftest import KNOWN_ROWS, free_port
from payload_receiver import receiver

from iris_service.rest.state import state_of

ROWS = [row for row, _, _ in KNOWN_ROWS]
KEY = "ce-secret-key-9931"
#: What KServe's logger sends in binary content mode, and our own extension.
CE_HEADERS = {"ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time", "ce-inferenceservicename",
              "ce-namespace", "ce-component", "ce-endpoint", "ce-modelversion"}


def dropped(client, reason: str) -> float:
    """``iris_payload_log_dropped_total{reason}`` as /metrics shows it (0 before the first drop)."""
    text = client.get("/metrics").get_data(as_text=True)
    found = re.search(rf'^iris_payload_log_dropped_total\{{reason="{reason}"\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_each_answer_is_a_request_and_a_response_cloudevent_as_kserve_sends_them(payload_app) -> None:
    with receiver() as (url, received):
        client = payload_app(PAYLOAD_LOG=url, API_KEYS=[KEY]).test_client()
        auth = {"Authorization": f"Bearer {KEY}", "X-API-Key": KEY}
        one = client.post("/predict", json={"features": ROWS[0]}, headers={**auth, "X-Request-ID": "ce-1"})
        many = client.post("/v1/models/iris:predict", json={"instances": ROWS}, headers={**auth, "X-Request-ID": "ce-2"})
        assert (one.status_code, many.status_code) == (200, 200)
        events = received.wait_for(4)
    assert len(events) == 4
    types = [(h["ce-id"], h["ce-type"]) for h, _ in events]
    assert types == [("ce-1", "org.kubeflow.serving.inference.request"), ("ce-1", "org.kubeflow.serving.inference.response"),
                     ("ce-2", "org.kubeflow.serving.inference.request"), ("ce-2", "org.kubeflow.serving.inference.response")]
    for headers, _ in events:
        assert CE_HEADERS <= set(headers)
        assert headers["ce-specversion"] == "1.0"
        assert headers["content-type"] == "application/json"
        assert (headers["ce-inferenceservicename"], headers["ce-modelversion"]) == ("iris", "1")
        assert headers["ce-source"] == "urn:iris-service" and headers["ce-component"] == "predictor"
        assert datetime.fromisoformat(headers["ce-time"].replace("Z", "+00:00")) <= datetime.now(timezone.utc)
        # Never the client's headers, keys or tokens.
        assert not {"authorization", "x-api-key", "x-request-id", "cookie"} & set(headers)
        assert KEY not in repr(headers)
    probabilities = [list(p["probabilities"].values()) for p in client.post(
        "/predict", json={"instances": ROWS}, headers=auth).get_json()["predictions"]]
    assert events[0][1] == {"instances": [ROWS[0]]}
    assert events[1][1]["predictions"] == ["setosa"]
    assert events[2][1] == {"instances": ROWS}
    assert events[3][1] == {"model_name": "iris", "model_version": "1", "predictions": ["setosa", "versicolor", "virginica"],
                            "probabilities": probabilities, "classes": ["setosa", "versicolor", "virginica"]}


def test_a_dead_receiver_never_fails_a_request_and_its_losses_are_counted(payload_app) -> None:
    app = payload_app(PAYLOAD_LOG=f"http://127.0.0.1:{free_port()}/nobody-listens")
    client = app.test_client()
    for i in range(20):
        response = client.post("/predict", json={"features": ROWS[i % 3]})
        assert response.status_code == 200 and response.get_json()["label"] == KNOWN_ROWS[i % 3][2]
    assert state_of(app).payload_log.flush()
    assert dropped(client, "sink_error") == 20
    assert dropped(client, "queue_full") == 0


def test_a_receiver_answering_errors_counts_every_record_lost(payload_app) -> None:
    with receiver(status=503) as (url, received):
        app = payload_app(PAYLOAD_LOG=url)
        client = app.test_client()
        for _ in range(5):
            assert client.post("/predict", json={"features": ROWS[1]}).status_code == 200
        assert state_of(app).payload_log.flush()
        assert dropped(client, "sink_error") == 5
        # The request event was refused, so its response event was never sent.
        assert [h["ce-type"] for h, _ in received.events] == ["org.kubeflow.serving.inference.request"] * 5


def test_a_slow_receiver_never_delays_a_request_and_a_full_queue_drops_and_counts(payload_app) -> None:
    with receiver(delay=0.5) as (url, received):
        app = payload_app(PAYLOAD_LOG=url, PAYLOAD_LOG_QUEUE=5)
        client = app.test_client()
        start = time.monotonic()
        for i in range(60):
            assert client.post("/predict", json={"features": ROWS[i % 3]}).status_code == 200
        # Delivering all 60 records would take the receiver a minute (two events of 0.5 s each).
        assert time.monotonic() - start < 30
        lost = dropped(client, "queue_full")
        assert 40 <= lost <= 55  # the queue holds 5, the writer took a few
        received.wait_for(2)
    assert received.events and received.events[0][0]["ce-type"] == "org.kubeflow.serving.inference.request"
