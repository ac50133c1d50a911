"""Shared fixtures: real models trained once per session into tmp dirs.

Every test talks to an app built by ``create_app`` on the testing config; tests
that need the real thing use ``live_server`` (a waitress process on a free
loopback port, stopped by its PID).
"""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import requests

from iris_service import create_app, training
from iris_service.rest.state import state_of

#: Known rows of the Iris data set (rows 0, 50 and 100) and their classes.
KNOWN_ROWS = [
    ([5.1, 3.5, 1.4, 0.2], 0, "setosa"),
    ([7.0, 3.2, 4.7, 1.4], 1, "versicolor"),
    ([6.3, 3.3, 6.0, 2.5], 2, "virginica"),
]
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _keep_gc_thresholds() -> Iterator[None]:
    """An app built outside testing tunes the collector (GC_THRESHOLD); undo it after each test."""
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)


@pytest.fixture(scope="session")
def iris_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model (logistic regression), trained once for the session."""
    out = tmp_path_factory.mktemp("iris") / "model.joblib"
    training.train(out, kind="logreg", name="iris", version="1")
    return out


@pytest.fixture(scope="session")
def forest_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("forest") / "model.joblib"
    training.train(out, kind="random_forest", name="forest", version="1", n_estimators=20)
    return out


@pytest.fixture
def app_config(iris_artifact: Path) -> dict[str, object]:
    return {"TESTING": True, "MODEL_PATH": str(iris_artifact)}


@pytest.fixture
def app(app_config: dict[str, object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    # An empty instance folder, so a developer's instance/config.py never leaks in.
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    return create_app_for_test(app_config)


def create_app_for_test(overrides: Mapping[str, object]):
    """``create_app`` on the testing config with ``overrides`` applied last."""
    return create_app({"ENV_NAME": "testing", **overrides})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready in {timeout}s")


@contextlib.contextmanager
def run_server(
    args: list[str], env: Mapping[str, str], port: int, ready_path: str = "/health/live", cwd: Path | None = None,
    output: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``args`` (a server listening on ``port``), yield its base URL, stop it by PID.

    With ``output`` the server's stdout and stderr go to that file: a pipe nobody
    reads fills after ~64 kB of request logs and then blocks the server.
    """
    full_env = {**os.environ, **env}
    sink = open(output, "wb") if output is not None else subprocess.PIPE  # noqa: SIM115 - closed below
    proc = subprocess.Popen(args, env=full_env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + ready_path, proc)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        if output is not None:
            sink.close()  # type: ignore[union-attr]


def server_env(artifact: Path | None, folder: Path, **extra: str) -> dict[str, str]:
    """A production server's environment: the artifact, an empty instance folder, ``extra``."""
    env = {"IRIS_SERVICE_ENV": "production", "IRIS_SERVICE_INSTANCE_PATH": str(folder / "instance")}
    if artifact is not None:
        env["IRIS_SERVICE_MODEL_PATH"] = str(artifact)
    return {**env, **extra}


def serve_args(port: int, *extra: str) -> list[str]:
    """``iris-service serve`` on 127.0.0.1:``port`` in this interpreter."""
    return [sys.executable, "-m", "iris_service.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *extra]


@pytest.fixture
def live_server(iris_artifact: Path, tmp_path: Path):
    """A factory: ``with live_server(extra_env) as base_url:`` runs waitress via our CLI."""

    @contextlib.contextmanager
    def start(env: Mapping[str, str] | None = None, extra_args: list[str] | None = None) -> Iterator[str]:
        port = free_port()
        args = serve_args(port, *(extra_args or []))
        with run_server(args, server_env(iris_artifact, tmp_path, **(env or {})), port,
                        output=tmp_path / f"server-{port}.log") as (base, _proc):
            yield base

    return start


class RequestLogLines(logging.Handler):
    """The lines the request logger emits (a listener, so they are logged synchronously)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.levels: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.levels.append(record.levelno)

    def records(self) -> list[dict[str, object]]:
        import orjson

        return [orjson.loads(line) for line in self.lines]

    def by_id(self, rid: str) -> dict[str, object]:
        [record] = [r for r in self.records() if r["request_id"] == rid]
        return record


@pytest.fixture
def log() -> Iterator[RequestLogLines]:
    """Capture the request log lines of the apps a test builds."""
    from iris_service.rest.middleware.request_log import LOGGER_NAME

    handler = RequestLogLines()
    logger = logging.getLogger(LOGGER_NAME)
    # The logger's level is the process's (a server's entry point sets it); the test sets its own.
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _serve_production(artifact: Path, folder: Path, **env: str) -> Iterator[str]:
    port = free_port()
    with run_server(serve_args(port), server_env(artifact, folder, **env), port,
                    output=folder / f"server-{port}.log") as (base, _):
        yield base


@pytest.fixture(scope="module")
def server(iris_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A production ``iris-service serve`` (UI off), shared by a module's tests that only read answers."""
    yield from _serve_production(iris_artifact, tmp_path_factory.mktemp("clients"))


@pytest.fixture(scope="module")
def ui_server(iris_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve_production(iris_artifact, tmp_path_factory.mktemp("clients-ui"), IRIS_SERVICE_UI_ENABLED="true")


class MakesMarker:
    """Unpickling this creates a directory: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


@pytest.fixture
def artifact(iris_artifact: Path, tmp_path: Path) -> Path:
    """A private (unsigned) copy of the trained model, free to tamper with."""
    from iris_service.artifacts import manifest_path

    target = tmp_path / "model.joblib"
    shutil.copy(iris_artifact, target)
    shutil.copy(manifest_path(iris_artifact), manifest_path(target))
    return target


@pytest.fixture
def payload_app(iris_artifact: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator:
    """``payload_app(**settings)``: an app with these overrides; every payload log it started is closed after."""
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    apps = []

    def make(**settings: object):
        app = create_app_for_test({"MODEL_PATH": str(iris_artifact), **settings})
        apps.append(app)
        return app

    yield make
    for app in apps:
        hook = state_of(app).payload_log
        if hook is not None:
            hook.close()
