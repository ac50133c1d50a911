"""A Flask developer mounts our blueprints in their own app, under a prefix."""
from __future__ import annotations

from flask import Flask

from iris_service import ModelStore
from iris_service.blueprints import health, predictions


def test_blueprints_mounted_under_ml_next_to_host_routes(iris_artifact):
    host = Flask("host_app")
    host.config["MODEL_PATH"] = str(iris_artifact)

    @host.get("/")
    def home():
        return {"host": "own route"}

    ModelStore().init_app(host)
    host.register_blueprint(predictions.blp, url_prefix="/ml")
    host.register_blueprint(health.blp, url_prefix="/ml")
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
