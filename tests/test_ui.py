"""The page at ``/`` without a browser: JSON index when off, any model's form when on."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import create_app_for_test
from sklearn.linear_model import LinearRegression, LogisticRegression

from iris_service.artifacts import describe_estimator, dump_joblib, write_artifact


def get(client, path: str):
    response = client.get(path)
    response.close()  # static files stream from disk; close so no file stays open
    return response


def test_ui_off_answers_json_index_not_404(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    client = create_app_for_test({"MODEL_PATH": str(iris_artifact), "UI_ENABLED": False}).test_client()
    response = get(client, "/")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["name"] == "iris-service"
    assert body["links"]["docs"] == "/docs"
    assert body["links"]["openapi"] == "/openapi.json"
    assert body["links"]["predict"] == "/predict"
    assert body["links"]["models"] == "/models"
    for path in body["links"].values():  # every advertised link is a real route
        assert get(client, path).status_code != 404


def test_index_says_alive_as_kserve_v1_reads_it(iris_artifact, tmp_path, monkeypatch):
    """KServe's SDK checks a V1 server's liveness with GET / and reads "status"."""
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    client = create_app_for_test({"MODEL_PATH": str(iris_artifact), "UI_ENABLED": False}).test_client()
    assert get(client, "/").get_json()["status"] == "alive"


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


@pytest.mark.parametrize(("accept", "mimetype"), [
    ("*/*", "application/json"),  # curl, requests, httpx: KServe's SDK
    ("application/json", "application/json"),
    (BROWSER_ACCEPT, "text/html"),
    (None, "text/html"),  # no Accept at all: the page, as before
])
def test_with_the_ui_on_the_index_is_negotiated(client, accept, mimetype):
    response = client.get("/", headers={"Accept": accept} if accept else {})
    response.close()
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert "Accept" in response.headers["Vary"]
    if mimetype == "application/json":
        body = response.get_json()
        assert body["status"] == "alive"
        assert body["ui"] == "The demo page is served here to browsers (Accept: text/html)."
        assert body["links"]["predict"] == "/predict"


def test_ui_is_off_by_default_in_production(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    from iris_service import create_app

    app = create_app({"ENV_NAME": "production", "MODEL_PATH": str(iris_artifact)})
    assert app.test_client().get("/").mimetype == "application/json"


def test_page_renders_a_labelled_input_per_feature(client):
    response = get(client, "/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    for i, name in enumerate(["sepal_length", "sepal_width", "petal_length", "petal_width"], start=1):
        assert f'<label for="f-{i}">{name.replace("_", " ")}' in html
        assert f'name="{name}"' in html
    assert 'data-min="4.3" data-max="7.9"' in html
    assert 'aria-live="polite"' in html
    assert 'data-endpoint="/models/iris/predict"' in html
    assert ">setosa</button>" in html and ">virginica</button>" in html
    assert "cdn" not in html.lower() and "https://" not in html  # works offline


def test_static_assets_are_served_from_the_package(client):
    for path in ("/static/ui.js", "/static/ui.css"):
        assert get(client, path).status_code == 200


def test_unknown_model_in_picker_is_json_404(client):
    response = get(client, "/?model=nope")
    assert response.status_code == 404
    assert response.get_json()["message"] == "No model named 'nope'; known models: iris."


@pytest.fixture
def wine_like_artifact(tmp_path: Path) -> Path:
    """A non-Iris classifier with its own feature names and ranges (no examples)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, size=(60, 3))
    y = (x[:, 0] > 5).astype(int)
    est = LogisticRegression().fit(x, y)
    manifest = describe_estimator(
        est, name="wine", version="3", fmt="joblib", feature_names=["alcohol", "ash", "hue"],
        class_names=["red", "white"],
        input_schema=[{"name": n, "min": 0.0, "max": 10.0} for n in ("alcohol", "ash", "hue")],
        metrics={"accuracy": 0.95},
    )
    path = tmp_path / "wine.joblib"
    write_artifact(path, dump_joblib(est), manifest)
    return path


@pytest.fixture
def regressor_artifact(tmp_path: Path) -> Path:
    x = np.arange(20, dtype=float).reshape(10, 2)
    est = LinearRegression().fit(x, x.sum(axis=1))
    manifest = describe_estimator(est, name="sum", version="1", fmt="joblib", feature_names=["a", "b"])
    path = tmp_path / "sum.joblib"
    write_artifact(path, dump_joblib(est), manifest)
    return path


def test_other_classifier_gets_its_fields_picker_and_midpoint_button(
    iris_artifact, wine_like_artifact, tmp_path, monkeypatch
):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "MODELS": {"wine": str(wine_like_artifact)}})
    html = get(app.test_client(), "/?model=wine").get_data(as_text=True)
    assert '<option value="wine" selected>' in html and '<option value="iris">' in html
    for name in ("alcohol", "ash", "hue"):
        assert f'name="{name}"' in html
    assert 'data-values=\'{"alcohol":5.0,"ash":5.0,"hue":5.0}\'' in html
    assert "typical row (middle of the training ranges)" in html
    assert 'data-class="red"' in html and 'data-class="white"' in html
    assert "<dt>Accuracy</dt><dd>95.0%</dd>" in html
    assert "<dt>Estimator</dt><dd>LogisticRegression</dd>" in html


def test_regressor_page_has_no_bars_or_example_buttons(regressor_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app_for_test({"MODEL_PATH": str(regressor_artifact)})
    response = get(app.test_client(), "/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'name="a"' in html and 'name="b"' in html
    assert 'id="bars"' not in html
    assert "button.example" not in html and 'class="example"' not in html
    assert "Press Predict to see the value." in html
    assert "<dt>Accuracy</dt><dd>not recorded</dd>" in html
    assert 'id="model-picker"' not in html  # one model: no picker


def test_page_has_no_key_field_when_the_server_has_no_keys(client):
    html = get(client, "/").get_data(as_text=True)
    assert 'id="api-key"' not in html
    assert "X-API-Key" not in html


def test_page_asks_for_a_key_when_predict_needs_one_and_keeps_its_csp(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    key = "page-key-never-rendered"
    client = create_app_for_test({"MODEL_PATH": str(iris_artifact), "API_KEYS": [key]}).test_client()
    response = get(client, "/")
    assert response.status_code == 200  # the page itself is open, like the docs
    html = response.get_data(as_text=True)
    field = re.search(r"<input id=\"api-key\"[^>]*>", html).group(0)
    assert 'type="password"' in field and 'autocomplete="off"' in field
    assert "name=" not in field  # a form submitted without JavaScript never puts the key in a URL
    assert '<label for="api-key">API key</label>' in html
    assert key not in html
    # Still no inline script: the page's code is the one same-origin file, and the CSP admits nothing else.
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts == ['<script src="/static/ui.js">']
    directives = dict(d.strip().split(" ", 1) for d in response.headers["Content-Security-Policy"].split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert get(client, "/static/ui.js").status_code == 200  # assets load without a key
    assert client.post("/models/iris/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).status_code == 401


def test_with_protected_docs_the_page_itself_answers_401_without_a_key(iris_artifact, tmp_path, monkeypatch):
    """API_KEYS_PROTECT_DOCS closes the page too: a browser cannot send a key when navigating, so it gets the 401."""
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    client = create_app_for_test({"MODEL_PATH": str(iris_artifact), "API_KEYS": ["k"],
                                  "API_KEYS_PROTECT_DOCS": True}).test_client()
    refused = get(client, "/")
    assert refused.status_code == 401 and refused.get_json()["code"] == 401
    page = client.get("/", headers={"X-API-Key": "k"})
    assert page.status_code == 200
    assert 'id="api-key"' in page.get_data(as_text=True)
