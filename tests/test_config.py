"""Config: environment choice, load order, production guards."""
from __future__ import annotations

import gc
import subprocess
import sys

import pytest

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
