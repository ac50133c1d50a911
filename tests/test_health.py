"""Health endpoints: the tutorial's text, liveness and readiness."""
from __future__ import annotations

from conftest import create_app_for_test


def test_health_keeps_the_tutorial_text_and_names_the_model(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "API is running!"
    assert body["model"] == "iris"
    assert body["version"] == "1"
    assert body["ready"] is True


def test_live_is_200(client):
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.get_json() == {"status": "alive"}


def test_ready_is_200_when_the_model_is_loaded(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "models": {"iris": "1"}}


def test_ready_is_503_json_when_the_model_failed_to_load(tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app_for_test({"MODEL_PATH": str(tmp_path / "missing.joblib")})
    client = app.test_client()
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert "does not exist" in ready.get_json()["message"]
    assert client.get("/health/live").status_code == 200
    health = client.get("/health")
    assert health.status_code == 200
    assert health.get_json()["status"] == "API is running!"
    assert health.get_json()["ready"] is False
    predict = client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]})
    assert predict.status_code == 503
    assert predict.get_json()["code"] == 503
