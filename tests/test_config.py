"""Config: environment choice, load order, production guards."""
from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest
from conftest import free_port, serve_args, server_env

from iris_service import create_app
from iris_service.settings import ConfigError, DevelopmentConfig, ProductionConfig, TestingConfig


@pytest.fixture
def instance(tmp_path, monkeypatch):
    folder = tmp_path / "instance"
    folder.mkdir()
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(folder))
    for var in ("IRIS_SERVICE_ENV", "IRIS_SERVICE_MODEL_PATH", "IRIS_SERVICE_MAX_BATCH_SIZE"):
        monkeypatch.delenv(var, raising=False)
    return folder


@pytest.mark.parametrize(("name", "cls"), [("development", DevelopmentConfig), ("testing", TestingConfig),
                                            ("production", ProductionConfig)])
def test_environment_by_name_variable_and_class(instance, iris_artifact, monkeypatch, name, cls):
    monkeypatch.setenv("IRIS_SERVICE_MODEL_PATH", str(iris_artifact))
    assert create_app(name).config["ENV_NAME"] == name
    assert create_app(cls).config["ENV_NAME"] == name
    monkeypatch.setenv("IRIS_SERVICE_ENV", name)
    assert create_app().config["ENV_NAME"] == name


def test_default_environment_is_development_with_the_instance_model(instance, monkeypatch):
    app = create_app()
    assert app.config["ENV_NAME"] == "development"
    assert app.config["MODEL_PATH"] == str(instance.resolve() / "iris_model.joblib")


def test_unknown_environment_is_a_clear_error(instance):
    with pytest.raises(ConfigError, match="Unknown environment 'staging'"):
        create_app("staging")


def test_load_order_class_then_instance_then_env_then_mapping(instance, iris_artifact, monkeypatch):
    (instance / "config.py").write_text(
        f"MODEL_PATH = {str(iris_artifact)!r}\nMAX_BATCH_SIZE = 111\nLOG_LEVEL = 'WARNING'\nAPI_TITLE = 'from-file'\n"
    )
    app = create_app("testing")
    assert app.config["MAX_BATCH_SIZE"] == 111  # instance file beats the class
    assert app.config["API_TITLE"] == "from-file"

    monkeypatch.setenv("IRIS_SERVICE_MAX_BATCH_SIZE", "222")
    monkeypatch.setenv("IRIS_SERVICE_LOG_LEVEL", "ERROR")
    app = create_app("testing")
    assert app.config["MAX_BATCH_SIZE"] == 222  # environment beats the file
    assert app.config["LOG_LEVEL"] == "ERROR"
    assert app.config["API_TITLE"] == "from-file"

    app = create_app({"ENV_NAME": "testing", "MAX_BATCH_SIZE": 333})
    assert app.config["MAX_BATCH_SIZE"] == 333  # the mapping beats everything
    assert app.config["LOG_LEVEL"] == "ERROR"
    assert app.config["TESTING"] is True


def test_env_values_are_parsed_as_json(instance, iris_artifact, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_MODEL_PATH", str(iris_artifact))
    monkeypatch.setenv("IRIS_SERVICE_PICKLE_ALLOWED", "true")
    monkeypatch.setenv("IRIS_SERVICE_MODELS", "{}")
    app = create_app("testing")
    assert app.config["PICKLE_ALLOWED"] is True
    assert app.config["MODELS"] == {}


def test_production_refuses_to_start_without_a_model(instance):
    with pytest.raises(ConfigError, match="IRIS_SERVICE_MODEL_PATH"):
        create_app("production")


def test_production_refuses_a_missing_model_file(instance, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_MODEL_PATH", str(tmp_path / "nope.joblib"))
    with pytest.raises(ConfigError, match="does not exist"):
        create_app("production")


def test_production_serve_exits_non_zero_with_a_clear_message(instance, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "iris_service.cli", "serve", "--env", "production", "--port", "0"],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "IRIS_SERVICE_INSTANCE_PATH": str(instance)},
    )
    assert result.returncode != 0
    assert "IRIS_SERVICE_MODEL_PATH" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_never_runs_with_debug(instance, iris_artifact, monkeypatch):
    (instance / "config.py").write_text("DEBUG = True\n")
    monkeypatch.setenv("IRIS_SERVICE_DEBUG", "true")
    app = create_app({"ENV_NAME": "production", "MODEL_PATH": str(iris_artifact), "DEBUG": True})
    assert app.debug is False
    assert app.config["DEBUG"] is False


def test_each_environment_points_at_its_own_artifact(instance, iris_artifact, monkeypatch):
    dev = create_app("development").config["MODEL_PATH"]
    monkeypatch.setenv("IRIS_SERVICE_MODEL_PATH", str(iris_artifact))
    prod = create_app("production").config["MODEL_PATH"]
    assert dev.endswith("iris_model.joblib") and str(instance.resolve()) in dev
    assert prod == str(iris_artifact)
    assert TestingConfig.MODEL_PATH is None  # fixtures always supply their own artifact


def test_gc_threshold_is_applied_by_the_server_entry_point_only(instance, iris_artifact):
    """The app as servers run it (serve, wsgi.py, waitress-serve --call) tunes the collector; create_app never."""
    from iris_service.cli.wsgi import create_app as served_app

    gc.set_threshold(700, 10, 10)
    create_app({"ENV_NAME": "production", "MODEL_PATH": str(iris_artifact)})
    assert gc.get_threshold() == (700, 10, 10)
    served_app({"ENV_NAME": "production", "MODEL_PATH": str(iris_artifact)})
    assert gc.get_threshold() == ProductionConfig.GC_THRESHOLD == (50_000, 20, 20)
    gc.set_threshold(700, 10, 10)
    served_app({"ENV_NAME": "production", "MODEL_PATH": str(iris_artifact), "GC_THRESHOLD": None})
    assert gc.get_threshold() == (700, 10, 10)


def test_gc_threshold_from_the_environment(instance, iris_artifact, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_GC_THRESHOLD", "[20000, 15]")
    from iris_service.cli.wsgi import create_app as served_app

    app = served_app({"ENV_NAME": "production", "MODEL_PATH": str(iris_artifact)})
    assert app.config["GC_THRESHOLD"] == (20000, 15)
    assert gc.get_threshold()[:2] == (20000, 15)


@pytest.mark.parametrize("value", [[0], [700, -1], "fast", [1, 2, 3, 4], [True], 5])
def test_a_bad_gc_threshold_is_refused(instance, iris_artifact, value):
    with pytest.raises(ConfigError, match="GC_THRESHOLD must be null or one to three positive integers"):
        create_app({"ENV_NAME": "production", "MODEL_PATH": str(iris_artifact), "GC_THRESHOLD": value})


def test_a_host_app_using_only_our_model_store_keeps_its_gc_thresholds(iris_artifact):
    from flask import Flask

    from iris_service import ModelStore

    gc.set_threshold(700, 10, 10)
    host = Flask("host_app")
    host.config["MODEL_PATH"] = str(iris_artifact)
    host.config["GC_THRESHOLD"] = (30_000, 10, 10)
    ModelStore().init_app(host)
    assert gc.get_threshold() == (700, 10, 10)  # even when set: the collector is the host process's
    from iris_service.cli.process import settle_heap

    settle_heap(host.config["GC_THRESHOLD"])  # opting in is the host's own call
    assert gc.get_threshold() == (30_000, 10, 10)


# --- keys and tokens from the environment are text ------------------------------------

ROW = [5.1, 3.5, 1.4, 0.2]


def keyed_app(iris_artifact):
    return create_app({"ENV_NAME": "testing", "MODEL_PATH": str(iris_artifact)})


@pytest.mark.parametrize("key", ["0", "null", "false", "123456", "true", "[1]"])
def test_an_api_key_that_looks_like_json_is_that_key(instance, iris_artifact, monkeypatch, key):
    """``IRIS_SERVICE_API_KEYS=0`` once parsed as JSON: ``0``/``null``/``false`` turned keys off, ``123456`` crashed."""
    monkeypatch.setenv("IRIS_SERVICE_API_KEYS", key)
    app = keyed_app(iris_artifact)
    assert app.config["API_KEYS"] == [key]
    client = app.test_client()
    refused = client.post("/predict", json={"features": ROW})
    assert refused.status_code == 401
    assert refused.get_json()["message"] == "Missing or wrong bearer token."
    answered = client.post("/predict", json={"features": ROW}, headers={"X-API-Key": key})
    assert answered.status_code == 200
    assert answered.get_json()["label"] == "setosa"
    assert client.post("/predict", json={"features": ROW}, headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_api_keys_from_the_environment_are_comma_separated(instance, iris_artifact, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_API_KEYS", "a,b")
    client = keyed_app(iris_artifact).test_client()
    for key in ("a", "b"):
        assert client.post("/predict", json={"features": ROW}, headers={"X-API-Key": key}).status_code == 200
    for wrong in ("a,b", "c", ""):
        assert client.post("/predict", json={"features": ROW}, headers={"X-API-Key": wrong}).status_code == 401


@pytest.mark.parametrize("value", ["", " ", " , "])
def test_an_empty_api_keys_variable_means_no_keys(instance, iris_artifact, monkeypatch, value):
    monkeypatch.setenv("IRIS_SERVICE_API_KEYS", value)
    app = keyed_app(iris_artifact)
    assert app.config["API_KEYS"] == []
    response = app.test_client().post("/predict", json={"features": ROW})
    assert response.status_code == 200
    assert response.get_json()["label"] == "setosa"


@pytest.mark.parametrize("token", ["123", "0", "null", "false"])
def test_an_admin_token_that_looks_like_json_is_that_token(instance, iris_artifact, monkeypatch, token):
    monkeypatch.setenv("IRIS_SERVICE_ADMIN_TOKEN", token)
    app = keyed_app(iris_artifact)
    assert app.config["ADMIN_TOKEN"] == token
    client = app.test_client()
    assert client.post("/admin/models/iris/reload").status_code == 401
    assert client.post("/admin/models/iris/reload", headers={"Authorization": "Bearer 1234"}).status_code == 401
    accepted = client.post("/admin/models/iris/reload", headers={"Authorization": f"Bearer {token}"})
    assert accepted.status_code == 200
    assert accepted.get_json()["name"] == "iris"


def test_an_empty_admin_token_variable_leaves_the_admin_routes_off(instance, iris_artifact, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_ADMIN_TOKEN", "")
    app = keyed_app(iris_artifact)
    assert app.config["ADMIN_TOKEN"] is None
    response = app.test_client().post("/admin/models/iris/reload", headers={"Authorization": "Bearer "})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("API_KEYS = 5", "API_KEYS must be a list of strings or a comma-separated string, not a value of type int."),
        ("API_KEYS = [1234, 'ok']", "API_KEYS must be a list of strings or a comma-separated string, not a list holding int."),
        ("API_KEYS = True", "API_KEYS must be a list of strings or a comma-separated string, not a value of type bool."),
        ("CORS_ORIGINS = 5", "CORS_ORIGINS must be a list of strings or a comma-separated string, not 5."),
        ("CORS_ORIGINS = {'https://a.example': 1}",
         "CORS_ORIGINS must be a list of strings or a comma-separated string, not {'https://a.example': 1}."),
        ("SKOPS_TRUSTED_TYPES = 1.5",
         "SKOPS_TRUSTED_TYPES must be a list of strings or a comma-separated string, not 1.5."),
        ("ADMIN_TOKEN = 123", "ADMIN_TOKEN must be a string (or unset), not a value of type int."),
        ("ADMIN_TOKEN = ['admin-secret']", "ADMIN_TOKEN must be a string (or unset), not a list."),
    ],
    ids=["keys-int", "keys-list-of-int", "keys-bool", "cors-int", "cors-dict", "skops-float", "token-int",
         "token-list"],
)
def test_a_setting_of_the_wrong_type_in_instance_config_stops_create_app(instance, iris_artifact, line, message):
    (instance / "config.py").write_text(line + "\n")
    with pytest.raises(ConfigError) as caught:
        keyed_app(iris_artifact)
    assert str(caught.value) == message
    assert "1234" not in str(caught.value) and "admin-secret" not in str(caught.value)  # secrets are not echoed


@pytest.mark.parametrize("value", ['["*"]', '["https://a.example"]', "app.example", "https://a.example/path"])
def test_a_cors_origin_no_browser_can_send_stops_create_app(instance, iris_artifact, monkeypatch, value):
    monkeypatch.setenv("IRIS_SERVICE_CORS_ORIGINS", value)
    with pytest.raises(ConfigError) as caught:
        keyed_app(iris_artifact)
    assert str(caught.value) == (
        f"CORS_ORIGINS entries are origins like https://app.example (or *), not {value!r}; "
        "from the environment write them comma-separated: https://a.example,https://b.example."
    )


def test_cors_origins_from_the_environment_are_comma_separated(instance, iris_artifact, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_CORS_ORIGINS", "https://a.example, http://127.0.0.1:8080/")
    client = keyed_app(iris_artifact).test_client()
    for origin in ("https://a.example", "http://127.0.0.1:8080"):
        response = client.post("/predict", json={"features": ROW}, headers={"Origin": origin})
        assert response.headers["Access-Control-Allow-Origin"] == origin
    monkeypatch.setenv("IRIS_SERVICE_CORS_ORIGINS", "*")
    response = keyed_app(iris_artifact).test_client().post("/predict", json={"features": ROW},
                                                             headers={"Origin": "https://any.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_lists_in_instance_config_may_be_comma_separated_strings(instance, iris_artifact):
    (instance / "config.py").write_text(
        "API_KEYS = 'k-1, k-2,'\nCORS_ORIGINS = 'https://a.example'\nSKOPS_TRUSTED_TYPES = None\nADMIN_TOKEN = ' t '\n"
    )
    app = keyed_app(iris_artifact)
    assert app.config["API_KEYS"] == ["k-1", "k-2"]
    assert app.config["CORS_ORIGINS"] == ["https://a.example"]
    assert app.config["SKOPS_TRUSTED_TYPES"] == []
    assert app.config["ADMIN_TOKEN"] == "t"
    client = app.test_client()
    assert client.post("/predict", json={"features": ROW}, headers={"X-API-Key": "k-2"}).status_code == 200
    assert client.post("/admin/models/iris/reload", headers={"Authorization": "Bearer t"}).status_code == 200


def test_serve_refuses_a_json_scalar_api_keys_with_one_line(instance, iris_artifact):
    (instance / "config.py").write_text("API_KEYS = 5\n")
    result = subprocess.run(
        [sys.executable, "-m", "iris_service.cli", "serve", "--env", "production", "--port", "0"],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "IRIS_SERVICE_INSTANCE_PATH": str(instance),
             "IRIS_SERVICE_MODEL_PATH": str(iris_artifact)},
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["Error: API_KEYS must be a list of strings or a comma-separated string, not a value of type int."]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be json or text, not 'xml'."),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be a logging level (DEBUG, INFO, WARNING, ERROR), not 'LOUD'."),
        ("MODELS", "[1]", """MODELS must map names to strings (JSON {"name": "..."}), not [1]."""),
        ("MODEL_VERSIONS", "5", """MODEL_VERSIONS must map names to strings (JSON {"name": "..."}), not 5."""),
        ("MODEL_PATH", "5", "MODEL_PATH must be a string, not 5."),
        ("DEFAULT_MODEL", "nope", "DEFAULT_MODEL 'nope' is not configured; configured models: iris."),
    ],
)
def test_bad_model_and_log_settings_stop_serve_with_one_line(iris_artifact, tmp_path, key, value, message):
    """Settings checked at start: one line naming the setting, a non-zero exit, never a traceback."""
    env = {**os.environ, **server_env(iris_artifact, tmp_path, **{f"IRIS_SERVICE_{key}": value})}
    result = subprocess.run(serve_args(free_port()), env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"Error: {message}"
