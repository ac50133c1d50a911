"""The commands of Serving, Model artifacts and Protocols run as written and answer what the pages show.

Each command is read from the page's fenced blocks (as ``test_docs.py`` reads Getting started) and
run by bash in a working folder holding what a checkout has there: ``instance/iris_model.joblib``
trained by ``iris-service train`` (as ``make run`` does), ``wsgi.py`` and ``gunicorn.conf.py``. Only
the address changes: port 5000 (and 8080, 0.0.0.0) becomes a free loopback port, given with
``--port`` where a command relies on ``serve``'s default, and servers are stopped by their process
group's id. ``pip install`` lines are not run (no index here): what they install is checked instead.
The Spark snippet runs against a stand-in for pyspark: its schema must be the columns and types
``score_frame`` returns, for the logistic default and for a forest.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
from conftest import ROOT, free_port
from test_docs import commands, fenced_blocks, stop_group

DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent
#: The version the pages show: a model trained by ``iris-service train`` without ``--version``.
SHOWN_VERSION = "20261201.235352"
ROW = {"features": [5.1, 3.5, 1.4, 0.2]}

pytestmark = [pytest.mark.server, pytest.mark.skipif(os.name == "nt", reason="the pages' bash is for POSIX")]


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def shell_lines(block: str) -> list[tuple[str, list[str]]]:
    """Each command of a block (continuations, ``|`` pipes and quoted lines joined) with the ``#`` lines after it."""
    joined = re.sub(r"\|\n\s*", "| ", block.replace("\\\n", " "))
    out: list[tuple[str, list[str]]] = []
    for line in joined.splitlines():
        text = line.strip()
        if out and out[-1][0].count("'") % 2:  # inside a quoted body: the same command
            out[-1] = (f"{out[-1][0]}\n{line}", out[-1][1])
        elif text.startswith("#") and out:
            out[-1][1].append(text[1:].strip())
        elif text and not text.startswith("#"):
            out.append((text, []))
    return out


def shows(expected: list[str], actual: str) -> bool:
    """``actual`` is what the page shows: ``...`` stands for anything, the version for any such timestamp."""
    pattern = re.escape("".join(expected)).replace(re.escape("..."), ".*?")
    pattern = pattern.replace(re.escape(SHOWN_VERSION), r"\d{8}\.\d{6}")
    return re.fullmatch(pattern, actual.strip(), re.DOTALL) is not None


def on_port(command: str, port: int) -> str:
    """The command on ``port`` of the loopback interface; ``serve`` without ``--port`` gets one."""
    command = command.replace("--host 0.0.0.0 --port 8080", f"--host 127.0.0.1 --port {port}")
    command = command.replace("127.0.0.1:5000", f"127.0.0.1:{port}").replace("--port 5000", f"--port {port}")
    if re.search(r"iris-service serve\b", command) and "--port" not in command:
        command = command.replace("iris-service serve", f"iris-service serve --port {port}")
    return command


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as the pages expect the checkout's root: the trained default model, wsgi.py, gunicorn.conf.py."""
    folder = tmp_path_factory.mktemp("checkout")
    for name in ("wsgi.py", "gunicorn.conf.py"):
        shutil.copy(ROOT / name, folder / name)
    trained = subprocess.run(["bash", "-c", "iris-service train --out instance/iris_model.joblib"], cwd=folder,
                             env=user_env(), capture_output=True, text=True, timeout=120)
    assert trained.returncode == 0, trained.stderr
    return folder


def user_env(**extra: str) -> dict[str, str]:
    """A shell with the environment activated, none of our settings or server variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IRIS_SERVICE_", "GUNICORN_", "PROMETHEUS_MULTIPROC_DIR", "VIRTUAL_ENV"))}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(BIN.parent), **extra}


def run(command: str, folder: Path, state: Path | None = None) -> str:
    """One command in bash, what the previous ones exported in ``state`` visible; its stdout."""
    script = f"set -eo pipefail\n. {state}\n{command}\nexport -p > {state}" if state else command
    result = subprocess.run(["bash", "-c", script], cwd=folder, env=user_env(), capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@contextlib.contextmanager
def serving(command: str, folder: Path, port: int, log: Path, *, state: Path | None = None,
            ready: str = "/health/ready", **extra: str) -> Iterator[str]:
    """``command`` running in the background until it answers ``ready``; stopped by its process group's id."""
    prefix = f". {state}\n" if state else ""
    with open(log, "wb") as sink:
        proc = subprocess.Popen(["bash", "-c", prefix + command], cwd=folder, env=user_env(**extra), stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"{command} exited {proc.returncode}:\n{log.read_text()}"
            with contextlib.suppress(requests.RequestException):
                if requests.get(base + ready, timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"{command} did not answer {ready}:\n{log.read_text()}"
            time.sleep(0.2)
        yield base
    finally:
        stop_group(proc)


def _serving_commands() -> list[str]:
    shown = [c for block in fenced_blocks(page("serving.md"), "bash") for c in commands(block)]
    assert "pip install gunicorn" in shown  # not run: gunicorn is in the dev extra, checked below
    return list(dict.fromkeys(c for c in shown if not c.startswith("pip ")))


SERVING = _serving_commands()


def test_what_the_serving_page_installs_is_in_place():
    assert importlib.util.find_spec("gunicorn") is not None and (BIN / "gunicorn").exists()


@pytest.mark.parametrize("command", SERVING, ids=[c.split(" --")[0].split()[-1] + f"-{i}"
                                                  for i, c in enumerate(SERVING)])
def test_every_serving_command_serves_the_model(checkout, tmp_path, command):
    port = free_port()
    line = on_port(command, port).replace("/tmp/iris-metrics", str(tmp_path / "metrics"))
    prefix = "/api" if "--url-prefix /api" in line else ""
    log = tmp_path / "server.log"
    with serving(line, checkout, port, log, ready=f"{prefix}/health/ready",
                 GUNICORN_BIND=f"127.0.0.1:{port}") as base:
        answer = requests.post(f"{base}{prefix}/predict", json=ROW, timeout=10)
        assert answer.status_code == 200 and answer.json()["label"] == "setosa"
        assert re.fullmatch(r"\d{8}\.\d{6}", answer.json()["version"])
        if prefix:  # the page: any other path is a JSON 404 that names the prefix
            outside = requests.post(f"{base}/predict", json=ROW, timeout=10)
            assert outside.status_code == 404 and "/api" in outside.json()["message"]
    text = log.read_text()
    assert "Traceback" not in text
    if line.startswith("IRIS_SERVICE_MODEL_PATH=") and " iris-service serve " in line:
        # The page: the first is granian, --threads 8.
        assert re.search(rf"serving on http://127\.0\.0\.1:{port}\S* \(granian, 1 worker\(s\) x 8 thread\(s\)\)",
                         text), text
    if "gunicorn -c gunicorn.conf.py" in line:
        assert f"Listening at: http://127.0.0.1:{port}" in text


def test_the_roll_out_and_back_answers_as_shown_then_onnx_serves_without_pickles(checkout, tmp_path):
    folder = tmp_path / "work"
    shutil.copytree(checkout, folder)
    state = tmp_path / "exported.sh"
    state.write_text("", encoding="utf-8")
    serve_v2, roll, onnx, *_ = [shell_lines(b) for b in fenced_blocks(page("artifacts.md"), "bash")]
    port = free_port()
    *setup, (server, _) = serve_v2
    for command, _ in setup:
        run(command, folder, state)
    assert "export TOKEN=" in "".join(c for c, _ in setup)
    with serving(on_port(server, port), folder, port, tmp_path / "dev.log", state=state):
        for command, expected in roll:
            out = run(on_port(command, port), folder, state)
            if expected:
                assert shows(expected, out), (command, expected, out)
    assert [c for c, _ in roll if c.startswith("curl")] and all(e for c, e in roll if c.startswith("curl"))

    install, *steps, (production, _) = onnx
    assert install[0].startswith("pip install -e '.[onnx,skops]'")  # not run: the dev extra has them
    assert all(importlib.util.find_spec(m) for m in ("skl2onnx", "onnxruntime", "skops"))
    for command, _ in steps:
        run(command, folder, state)
    assert (folder / "models" / "iris" / "3" / "model.onnx").is_file()
    port = free_port()
    log = tmp_path / "production.log"
    with serving(on_port(production, port), folder, port, log, state=state) as base:
        answer = requests.post(f"{base}/predict", json=ROW, timeout=10).json()
        # The page: the newest version of each model (iris 4, its ONNX file), every pickle refused.
        assert (answer["model"], answer["version"], answer["label"]) == ("iris", "4", "setosa")
    assert "Traceback" not in log.read_text()


def test_the_protocol_examples_answer_what_the_page_shows(checkout, tmp_path):
    port = free_port()
    examples = [pair for block in fenced_blocks(page("protocols.md"), "sh") for pair in shell_lines(block)]
    assert len(examples) == 4 and all(expected for _, expected in examples)
    assert any(SHOWN_VERSION in "".join(expected) for _, expected in examples)  # the V2 model_version
    server = f"IRIS_SERVICE_MODEL_PATH=instance/iris_model.joblib iris-service serve --port {port}"
    with serving(server, checkout, port, tmp_path / "server.log"):
        for command, expected in examples:
            out = run(on_port(command, port), checkout)
            assert shows(expected, out), (command, expected, out)


class _Type:
    def __init__(self) -> None:
        self.name = type(self).__name__

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(self.name)


def _pyspark() -> tuple[types.ModuleType, dict[str, type]]:
    """``pyspark.sql.types`` with the names the snippet imports, and the pandas dtype each stands for."""
    module = types.ModuleType("pyspark.sql.types")
    kinds = {"DoubleType": "float64", "LongType": "int64", "StringType": "object"}
    made = {name: type(name, (_Type,), {}) for name in kinds}
    for name, cls in made.items():
        setattr(module, name, cls)
    module.StructField = lambda name, data_type: types.SimpleNamespace(name=name, dataType=data_type)
    module.StructType = lambda fields: types.SimpleNamespace(fields=list(fields))
    return module, {kinds[name]: cls for name, cls in made.items()}


class _Frame:
    """What the snippet uses of a Spark DataFrame: ``schema.fields`` and ``mapInPandas``."""

    def __init__(self, frame: pd.DataFrame, by_dtype: dict[str, type]) -> None:
        self.frame = frame
        fields = [types.SimpleNamespace(name=c, dataType=by_dtype[str(frame[c].dtype)]()) for c in frame.columns]
        self.schema = types.SimpleNamespace(fields=fields)

    def mapInPandas(self, fn, schema):  # noqa: N802 - Spark's name
        return list(fn(iter([self.frame.iloc[:3], self.frame.iloc[3:]]))), schema


@pytest.mark.parametrize("kind", ["iris", "forest"])
def test_the_spark_snippets_schema_is_what_score_frame_returns(iris_artifact, forest_artifact, tmp_path,
                                                                monkeypatch, kind):
    artifact = {"iris": iris_artifact, "forest": forest_artifact}[kind]
    [*_, snippet] = fenced_blocks(page("file-scoring.md"), "python")
    assert 'MODEL = "/shared/models/iris/model.joblib"' in snippet
    types_module, by_dtype = _pyspark()
    for name, module in (("pyspark", types.ModuleType("pyspark")), ("pyspark.sql", types.ModuleType("pyspark.sql")),
                         ("pyspark.sql.types", types_module)):
        monkeypatch.setitem(sys.modules, name, module)
    flowers = tmp_path / "flowers.parquet"
    pd.read_csv(DOCS / "examples" / "iris.csv").to_parquet(flowers)
    spark = types.SimpleNamespace(read=types.SimpleNamespace(
        parquet=lambda path: _Frame(pd.read_parquet(flowers if path == "flowers.parquet" else path), by_dtype)))
    namespace = {"spark": spark}
    exec(snippet.replace("/shared/models/iris/model.joblib", str(artifact)), namespace)  # noqa: S102 - the page's own code
    batches, schema = namespace["scored"]
    for batch in batches:
        assert [f.name for f in schema.fields] == list(batch.columns)
        assert [f.dataType for f in schema.fields] == [by_dtype[str(batch[c].dtype)]() for c in batch.columns]
    assert "id" in batches[0].columns and sum(len(b) for b in batches) == 6
