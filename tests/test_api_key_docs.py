"""With API_KEYS set, /openapi.json marks exactly the operations that answer 401 without a key."""
from __future__ import annotations

import re

import pytest
from conftest import KNOWN_ROWS, create_app_for_test


@pytest.fixture
def keyed(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "API_KEYS": ["k-1"], "ADMIN_TOKEN": "admin"})
    return app.test_client()


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "iris", path)


def operations(spec: dict) -> list[tuple[str, str, dict]]:
    methods = {"get", "post", "put", "patch", "delete"}
    return [(method.upper(), path, op) for path, item in spec["paths"].items()
            for method, op in item.items() if method in methods]


def test_guarded_operations_document_the_key_and_answer_401_without_it(keyed):
    spec = keyed.get("/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["ApiKeyHeader"] == {"type": "apiKey", "in": "header",
                                                                        "name": "X-API-Key"}
    guarded = 0
    for method, path, op in operations(spec):
        documented = "401" in op["responses"]
        response = keyed.open(concrete(path), method=method, json={"features": KNOWN_ROWS[0][0]})
        if path.startswith("/admin") or path.startswith("/v2/repository"):
            continue  # these answer 401 for a missing ADMIN_TOKEN, documented on their own
        if documented:
            guarded += 1
            assert op["security"] == [{"ApiKeyHeader": []}, {"BearerKey": []}], path
            assert response.status_code == 401, (method, path)
            assert "Bearer" in response.headers["WWW-Authenticate"]
        else:
            assert response.status_code != 401, (method, path)
    assert guarded >= 10
    open_paths = {path for _, path, op in operations(spec) if "401" not in op["responses"]}
    assert {"/health", "/health/live", "/health/ready", "/v2/health/live", "/ping"} <= open_paths


def test_with_the_key_the_guarded_predict_answers(keyed):
    response = keyed.post("/predict", json={"features": KNOWN_ROWS[0][0]}, headers={"X-API-Key": "k-1"})
    assert response.status_code == 200 and response.get_json()["prediction"] == 0


def test_without_api_keys_nothing_documents_a_key(client):
    spec = client.get("/openapi.json").get_json()
    assert "securitySchemes" not in spec.get("components", {})
    assert all("security" not in op for _, _, op in operations(spec))


def test_a_request_refused_for_its_key_is_still_logged_and_timed(keyed, log):
    response = keyed.post("/predict", json={"features": KNOWN_ROWS[0][0]}, headers={"X-Request-ID": "refused-1"})
    assert response.status_code == 401
    assert response.headers["X-Request-ID"] == "refused-1"
    entry = log.by_id("refused-1")
    assert entry["status"] == 401
    assert isinstance(entry["duration_ms"], float)
    assert "k-1" not in "".join(log.lines)
