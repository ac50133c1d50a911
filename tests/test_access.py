"""Access control and hardening: API keys, security headers, CORS, production config."""
from __future__ import annotations

import base64
import hashlib
import logging
import re

import pytest
from conftest import KNOWN_ROWS, create_app_for_test

from iris_service import create_app
from iris_service.cli.log_writer import configure_request_log
from iris_service.cli.log_writer import flush as flush_request_log
from iris_service.settings import ConfigError

ROW = KNOWN_ROWS[0][0]
KEYS = ["key-one-0123456789", "key-two-abcdefghij"]

#: Every route that must refuse a request without a key, with a valid body.
PROTECTED = [
    ("post", "/predict", {"features": ROW}),
    ("post", "/models/iris/predict", {"features": ROW}),
    ("get", "/models", None),
    ("get", "/models/iris", None),
    ("post", "/v1/models/iris:predict", {"instances": [ROW]}),
    ("post", "/invocations", {"instances": [ROW]}),
]
OPEN_PROBES = ["/health", "/health/live", "/health/ready", "/ping"]
OPEN_DOCS = ["/openapi.json", "/docs", "/docs/assets/swagger-ui.css"]


def make_app(iris_artifact, tmp_path, monkeypatch, **overrides):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    return create_app_for_test({"MODEL_PATH": str(iris_artifact), **overrides})


@pytest.fixture
def keyed(iris_artifact, tmp_path, monkeypatch):
    return make_app(iris_artifact, tmp_path, monkeypatch, API_KEYS=KEYS).test_client()


def call(client, method, path, body, headers=None):
    kwargs = {"headers": headers or {}}
    if body is not None:
        kwargs["json"] = body
    return getattr(client, method)(path, **kwargs)


# --- API keys -------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[p for _, p, _ in PROTECTED])
def test_protected_routes_answer_401_json_without_a_key(keyed, method, path, body):
    response = call(keyed, method, path, body)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="iris-service"'
    payload = response.get_json()
    if path.startswith("/invocations"):  # MLflow's error_code and message next to ours
        assert payload == {"error": "Missing or wrong bearer token.", "error_code": "UNAUTHENTICATED",
                           "message": "Missing or wrong bearer token."}
    elif path.startswith("/v1"):
        assert payload == {"error": "Missing or wrong bearer token."}
    else:
        assert payload == {"code": 401, "status": "Unauthorized", "message": "Missing or wrong bearer token."}


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[p for _, p, _ in PROTECTED])
@pytest.mark.parametrize("key", KEYS)
def test_protected_routes_answer_with_either_key_as_bearer(keyed, method, path, body, key):
    response = call(keyed, method, path, body, {"Authorization": f"Bearer {key}"})
    assert response.status_code == 200


@pytest.mark.parametrize("key", KEYS)
def test_x_api_key_header_is_accepted(keyed, key):
    response = keyed.post("/predict", json={"features": ROW}, headers={"X-API-Key": key})
    assert response.status_code == 200
    assert response.get_json()["label"] == "setosa"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {KEYS[0][:-1]}"},
        {"Authorization": f"Bearer {KEYS[0]}x"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {base64.b64encode(KEYS[0].encode()).decode()}"},
        {"Authorization": KEYS[0]},
        {"X-API-Key": ""},
        {"X-API-Key": KEYS[0].upper()},
        {"X-Api-Key": "Bearer " + KEYS[0]},
    ],
    ids=["wrong", "prefix", "suffix", "empty-bearer", "basic", "no-scheme", "empty-header", "case", "scheme-in-key"],
)
def test_wrong_or_malformed_credentials_are_401(keyed, headers):
    response = keyed.post("/predict", json={"features": ROW}, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["code"] == 401
    assert "WWW-Authenticate" in response.headers


def test_keys_come_from_the_environment_as_a_list(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_API_KEYS", "alpha-key, beta-key")
    client = make_app(iris_artifact, tmp_path, monkeypatch).test_client()
    assert client.post("/predict", json={"features": ROW}).status_code == 401
    for key in ("alpha-key", "beta-key"):
        assert client.post("/predict", json={"features": ROW}, headers={"X-API-Key": key}).status_code == 200
    assert client.post("/predict", json={"features": ROW}, headers={"X-API-Key": "alpha-key, beta-key"}).status_code == 401


def test_no_keys_configured_leaves_predictions_open(client):
    assert client.post("/predict", json={"features": ROW}).status_code == 200


@pytest.mark.parametrize("path", OPEN_PROBES + OPEN_DOCS)
def test_probes_and_docs_stay_open(keyed, path):
    response = keyed.get(path)
    assert response.status_code == 200
    response.close()


def test_metrics_stay_open_when_served(keyed):
    response = keyed.get("/metrics")
    if response.status_code == 404:
        assert response.get_json()["code"] == 404  # metrics not wired into this build
    else:
        assert response.status_code == 200


def test_probes_can_be_protected(iris_artifact, tmp_path, monkeypatch):
    client = make_app(iris_artifact, tmp_path, monkeypatch, API_KEYS=KEYS, API_KEYS_PROTECT_PROBES=True).test_client()
    for path in OPEN_PROBES:
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"X-API-Key": KEYS[0]}).status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_docs_can_be_protected(iris_artifact, tmp_path, monkeypatch):
    client = make_app(iris_artifact, tmp_path, monkeypatch, API_KEYS=KEYS, API_KEYS_PROTECT_DOCS=True).test_client()
    for path in ("/openapi.json", "/docs"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": f"Bearer {KEYS[1]}"}).status_code == 200
    assert client.get("/health").status_code == 200


def test_unknown_route_is_404_not_401(keyed):
    response = keyed.get("/no/such/route")
    assert response.status_code == 404
    assert response.get_json()["code"] == 404


def test_admin_routes_need_the_admin_token_not_an_api_key(iris_artifact, tmp_path, monkeypatch):
    client = make_app(iris_artifact, tmp_path, monkeypatch, API_KEYS=KEYS, ADMIN_TOKEN="admin-secret").test_client()
    refused = client.post("/admin/models/iris/reload", headers={"X-API-Key": KEYS[0]})
    assert refused.status_code == 401
    accepted = client.post("/admin/models/iris/reload", headers={"Authorization": "Bearer admin-secret"})
    assert accepted.status_code == 200
    assert accepted.get_json()["name"] == "iris"


ADMIN = "admin-secret-0123"
ADMIN_ROUTES = [("/admin/models/iris/reload", None), ("/v2/repository/index", {})]


@pytest.fixture
def admin_client(iris_artifact, tmp_path, monkeypatch):
    """API keys on, the admin token set, and a listed CORS origin."""
    return make_app(iris_artifact, tmp_path, monkeypatch, API_KEYS=KEYS, ADMIN_TOKEN=ADMIN,
                    CORS_ORIGINS=["https://app.example"]).test_client()


@pytest.mark.parametrize(("path", "body"), ADMIN_ROUTES, ids=["admin", "v2-repository"])
@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {ADMIN}"}, {"Authorization": f"bearer {ADMIN}"},
     {"Authorization": f"Bearer {ADMIN}", "X-API-Key": "anything"}],
    ids=["bearer", "lower-case-scheme", "bearer-beside-x-api-key"],
)
def test_admin_routes_take_the_token_as_a_bearer_token_alone(admin_client, path, body, headers):
    """No API key is needed beside it: a request has one Authorization header, and the token takes it."""
    response = admin_client.post(path, json=body, headers=headers)
    assert response.status_code == 200
    assert response.get_json()  # the reload's or the repository index's answer


@pytest.mark.parametrize(("path", "body"), ADMIN_ROUTES, ids=["admin", "v2-repository"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": ADMIN}, {"X-API-Key": ADMIN, "Authorization": f"Bearer {KEYS[0]}"},
     {"Authorization": f"Bearer {KEYS[0]}"}, {"Authorization": f"Basic {ADMIN}"}, {"Authorization": ADMIN}],
    ids=["none", "token-as-x-api-key", "token-as-x-api-key-with-a-key-as-bearer", "api-key-as-bearer", "basic",
         "no-scheme"],
)
def test_admin_routes_refuse_the_token_as_x_api_key_and_api_keys_with_401(admin_client, path, body, headers):
    response = admin_client.post(path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="iris-service admin"'
    payload = response.get_json()
    assert (payload.get("message") or payload.get("error")) == "Missing or wrong bearer token."


@pytest.mark.parametrize("path", [p for p, _ in ADMIN_ROUTES], ids=["admin", "v2-repository"])
def test_admin_routes_send_no_cors_headers_not_even_to_a_listed_origin(admin_client, path):
    preflight = admin_client.options(path, headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 401  # no token on a preflight: the browser stops here
    assert not [h for h in preflight.headers.keys() if h.lower().startswith("access-control-")]
    real = admin_client.post(path, json={}, headers={"Origin": "https://app.example",
                                                      "Authorization": f"Bearer {ADMIN}"})
    assert real.status_code == 200  # curl and other tools are unaffected
    assert not [h for h in real.headers.keys() if h.lower().startswith("access-control-")]
    # The API beside them still answers the same origin's preflight.
    api = admin_client.options("/predict", headers={"Origin": "https://app.example",
                                                    "Access-Control-Request-Method": "POST"})
    assert api.status_code == 200
    assert api.headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_keys_never_appear_in_logs_or_answers(iris_artifact, tmp_path, monkeypatch, caplog, capsys):
    configure_request_log("INFO")  # what a server's entry point does: lines to stderr
    client = make_app(iris_artifact, tmp_path, monkeypatch, API_KEYS=KEYS, LOG_FORMAT="json").test_client()
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-key-that-must-not-be-logged"
    answers = [
        client.post("/predict", json={"features": ROW}, headers={"Authorization": f"Bearer {KEYS[0]}"}),
        client.post("/predict", json={"features": ROW}, headers={"X-API-Key": KEYS[1]}),
        client.post("/predict", json={"features": ROW}, headers={"Authorization": f"Bearer {wrong}"}),
        client.post(f"/predict?api_key={wrong}", json={"features": ROW}),
        client.post("/predict", json={"nope": 1}, headers={"X-API-Key": KEYS[0]}),
    ]
    assert [r.status_code for r in answers] == [200, 200, 401, 401, 422]
    flush_request_log()  # request lines are written by a background thread
    captured = capsys.readouterr()
    text = caplog.text + captured.out + captured.err + "".join(r.get_data(as_text=True) for r in answers)
    assert "/predict" in captured.err  # the request log did write lines
    for secret in (*KEYS, wrong):
        assert secret not in text


# --- security headers -----------------------------------------------------------------

@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/predict", {"features": ROW}, 200),
        ("post", "/predict", {"features": [1]}, 422),
        ("get", "/predict", None, 405),
        ("get", "/nowhere", None, 404),
        ("get", "/health", None, 200),
        ("get", "/openapi.json", None, 200),
        ("get", "/docs", None, 200),
        ("get", "/docs/assets/swagger-ui-bundle.js", None, 200),
    ],
)
def test_every_response_says_nosniff(client, method, path, body, status):
    response = call(client, method, path, body)
    assert response.status_code == status
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    response.close()


@pytest.mark.parametrize(
    ("path", "body"),
    [("/predict", {"features": ROW}), ("/models/iris/predict", {"instances": [ROW]}),
     ("/predict", {"features": "x"}), ("/v1/models/iris:predict", {"instances": [ROW]})],
)
def test_prediction_answers_are_never_cached(client, path, body):
    response = client.post(path, json=body)
    assert response.headers["Cache-Control"] == "no-store"


def test_api_answers_get_a_deny_all_csp(client):
    response = client.post("/predict", json={"features": ROW})
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_docs_page_csp_allows_its_own_scripts_only(client):
    response = client.get("/docs")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert "'unsafe-inline'" not in directives["script-src"]
    assert directives["connect-src"] == "'self'"  # Swagger UI fetches /openapi.json
    html = response.get_data()
    inline = re.findall(rb"<script>(.*?)</script>", html, re.DOTALL)
    assert inline, "the docs page bootstraps Swagger UI with an inline script"
    for script in inline:
        digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
        assert f"'sha256-{digest}'" in directives["script-src"]
    # Every asset the page loads is same-origin, so 'self' covers it.
    for src in re.findall(rb'(?:src|href)="([^"]+)"', html):
        assert src.startswith(b"/docs/assets/")
        asset = client.get(src.decode())
        assert asset.status_code == 200
        asset.close()


def test_docs_assets_may_be_cached(client):
    response = client.get("/docs/assets/swagger-ui.css")
    assert "no-store" not in response.headers["Cache-Control"]
    response.close()


# --- CORS -----------------------------------------------------------------------------

def test_cors_is_off_by_default(client):
    response = client.post("/predict", json={"features": ROW}, headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    assert not [h for h in response.headers.keys() if h.lower().startswith("access-control-")]
    preflight = client.options("/predict", headers={"Origin": "https://evil.example",
                                                    "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers


@pytest.fixture
def cors_client(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_CORS_ORIGINS", "https://app.example, https://other.example/")
    return make_app(iris_artifact, tmp_path, monkeypatch, API_KEYS=KEYS).test_client()


@pytest.mark.parametrize("origin", ["https://app.example", "https://other.example"])
def test_listed_origin_is_echoed(cors_client, origin):
    response = cors_client.post("/predict", json={"features": ROW},
                                headers={"Origin": origin, "X-API-Key": KEYS[0]})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in response.headers["Vary"]
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize("origin", ["https://evil.example", "https://app.example.evil.example", "null"])
def test_unlisted_origin_gets_no_cors_headers(cors_client, origin):
    response = cors_client.post("/predict", json={"features": ROW}, headers={"Origin": origin, "X-API-Key": KEYS[0]})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_preflight_needs_no_key_and_lists_methods_and_headers(cors_client):
    response = cors_client.options("/predict", headers={
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-api-key",
    })
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "x-api-key", "authorization"} <= allowed
    assert int(response.headers["Access-Control-Max-Age"]) > 0


def test_401_carries_cors_headers_so_browsers_can_read_it(cors_client):
    response = cors_client.post("/predict", json={"features": ROW}, headers={"Origin": "https://app.example"})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_wildcard_origin(iris_artifact, tmp_path, monkeypatch):
    client = make_app(iris_artifact, tmp_path, monkeypatch, CORS_ORIGINS=["*"]).test_client()
    response = client.post("/predict", json={"features": ROW}, headers={"Origin": "https://any.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# --- production config ----------------------------------------------------------------

@pytest.fixture
def production(iris_artifact, tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    instance.mkdir()
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(instance))
    monkeypatch.delenv("FLASK_DEBUG", raising=False)

    def build(**overrides):
        return create_app({"ENV_NAME": "production", "MODEL_PATH": str(iris_artifact), **overrides})

    build.instance = instance
    return build


def test_production_ignores_debug_from_the_mapping(production):
    app = production(DEBUG=True)
    assert app.debug is False and app.config["DEBUG"] is False


def test_production_ignores_debug_from_the_environment(production, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_DEBUG", "true")
    assert production().debug is False


def test_production_ignores_debug_from_instance_config(production):
    (production.instance / "config.py").write_text("DEBUG = True\n")
    assert production().debug is False


def test_production_refuses_flask_debug(production, monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    with pytest.raises(ConfigError, match="FLASK_DEBUG"):
        production()


def test_production_app_run_never_starts_the_debugger(production, monkeypatch):
    import werkzeug.serving

    calls = []
    monkeypatch.setattr(werkzeug.serving, "run_simple", lambda *args, **kwargs: calls.append(kwargs))
    app = production()
    app.run(port=0, debug=True, use_debugger=True, use_reloader=True)
    assert calls and calls[0]["use_debugger"] is False
    assert calls[0]["use_reloader"] is False
    assert calls[0]["use_evalex"] is False
    assert app.debug is False


def test_production_needs_no_secret_key(production):
    app = production()
    assert not app.config.get("SECRET_KEY")
    response = app.test_client().post("/predict", json={"features": ROW})
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


def test_model_error_in_production_is_500_json_with_request_id_and_no_internals(production, monkeypatch, caplog):
    app = production()
    model = app.extensions["iris_service"].dataplane.model()

    def broken(x):
        raise RuntimeError("secret internal detail at /srv/models/iris.joblib")

    monkeypatch.setattr(model, "predict", broken)
    response = app.test_client().post("/predict", json={"features": ROW}, headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    payload = response.get_json()
    text = response.get_data(as_text=True)
    assert payload["code"] == 500
    assert payload["message"] == "Internal server error; the error was logged."
    for leak in ("secret", "Traceback", "RuntimeError", "/srv/", "iris_service"):
        assert leak not in text
    assert response.headers["Cache-Control"] == "no-store"
    assert payload["request_id"] == "req-42" == response.headers["X-Request-ID"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert any("secret internal detail" in str(r.exc_info[1]) for r in errors)
