"""Every command's usual mistakes end in one ``Error:`` line on stderr: no traceback, no usage page, no repr.

Each case runs ``iris-service`` in a subprocess, as a user would, in a folder
holding a trained model and the kinds of files people pass by mistake.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ROOT

from iris_service.artifacts import manifest_path, read_manifest

CSV = "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n"
#: What must never reach a user: Python's internals instead of a sentence.
NOISE = ("Traceback", "<class", "object at 0x", "Errno", "Exception ignored", "Usage:")


@pytest.fixture(scope="module")
def folder(iris_artifact: Path, forest_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder: models, good and bad inputs, a file where a folder is expected."""
    here = tmp_path_factory.mktemp("mistakes")
    for artifact, name in ((iris_artifact, "model.joblib"), (forest_artifact, "forest/model.joblib")):
        (here / name).parent.mkdir(exist_ok=True)
        shutil.copy(artifact, here / name)
        shutil.copy(manifest_path(artifact), manifest_path(here / name))
    (here / "ok.csv").write_text(CSV)
    (here / "empty.csv").write_text("")
    (here / "latin.csv").write_bytes(b"\xff\xfe,a\n1,2\n")
    (here / "quoted.csv").write_text('a,b\n"1,2\n')
    (here / "bad.parquet").write_bytes(b"garbage")
    (here / "folder.csv").mkdir()
    (here / "junk.joblib").write_text("junk")
    (here / "bad.key").write_text("not a key")
    (here / "registry").mkdir()
    (here / "instance").mkdir()
    return here


def cli_env(folder: Path, **extra: str) -> dict[str, str]:
    """This checkout's code, the folder's model, development settings; nothing from the caller's instance."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRIS_SERVICE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(IRIS_SERVICE_INSTANCE_PATH=str(folder / "instance"), IRIS_SERVICE_MODEL_PATH=str(folder / "model.joblib"))
    return {**env, **extra}


def run_cli(folder: Path, args: list[str], env: dict[str, str] | None = None,
            prefix: tuple[str, ...] = ("-m", "iris_service.cli")) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *prefix, *args], cwd=folder, env=env or cli_env(folder),
                          capture_output=True, text=True, timeout=120)


def only_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a mistake prints, checked for everything that must not be there."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    [line] = lines
    assert line.startswith("Error: ")
    assert not any(noise in result.stderr for noise in NOISE), result.stderr
    assert not line.endswith("..")
    return line


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    """A loopback port something already listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


#: (arguments, exit code, the start of the one line; "{folder}" and "{busy}" are filled in).
CASES = [
    # the group
    (["bogus"], 2, "Error: No such command 'bogus' (see iris-service --help)."),
    (["--bogus"], 2, "Error: No such option '--bogus' (see iris-service --help)."),
    # train
    (["train", "--out", "models/iris"], 2, "Error: --out models/iris has no .joblib suffix: name the file, e.g. "
                                            "--out models/iris/model.joblib (or --model-dir for a registry folder)"),
    (["train", "--out", "m/x.onnx"], 2, "Error: --out m/x.onnx: a joblib artifact needs a .joblib file name, not "
                                        "x.onnx; to write onnx, add --format onnx"),
    (["train", "--format", "skops", "--out", "m/x.joblib"], 2, "Error: --out m/x.joblib: a skops artifact needs a "
                                                               ".skops file name, not x.joblib"),
    (["train", "--out", "registry"], 2, "Error: Invalid value for '--out': File 'registry' is a directory"),
    (["train", "--out", "ok.csv/model.joblib"], 1, "Error: Could not write ok.csv/model.joblib: ok.csv is a file, "
                                                   "not a folder"),
    (["train", "--out", "model.joblib"], 1, "Error: model.joblib already exists; pass --force to replace it"),
    (["train", "--out", "a.joblib", "--model-dir", "registry"], 2, "Error: Give --out or --model-dir, not both"),
    (["train", "--model", "svm"], 2, "Error: Invalid value for '--model': 'svm' is not one of 'logreg', "
                                     "'random_forest'"),
    (["train", "--n-estimators", "0"], 2, "Error: Invalid value for '--n-estimators': 0 is not in the range x>=1"),
    (["train", "--seed", "abc"], 2, "Error: Invalid value for '--seed': 'abc' is not a valid integer"),
    (["train", "--out", "k.joblib", "--sign-key", "bad.key"], 1, "Error: bad.key is not a PEM (PKCS8) private key"),
    (["train", "--out", "k.joblib", "--sign-key", "nokey"], 1, "Error: The private key file nokey does not exist"),
    (["train", "--model-dir", "registry", "--name", "a/b"], 2, "Error: --name 'a/b' must be one folder name: "
                                                               "letters, digits, '.', '_' or '-'"),
    (["train", "--model-dir", "registry", "--version", "../../v"], 2, "Error: --version '../../v' must be one "
                                                                      "folder name"),
    (["train", "--model-dir", "registry", "--name", ".hidden"], 2, "Error: --name '.hidden' must be one folder name"),
    # serve
    (["serve", "--port", "99999"], 2, "Error: Invalid value for '--port': 99999 is not in the range 0<=x<=65535"),
    (["serve", "--threads", "0"], 2, "Error: Invalid value for '--threads': 0 is not in the range 1<=x<=1024"),
    (["serve", "--env", "staging"], 2, "Error: Invalid value for '--env': 'staging' is not one of 'development', "
                                       "'testing', 'production'"),
    (["serve", "--trusted-proxy", "10.0.0.1"], 2, "Error: --trusted-proxy needs --trusted-proxy-headers"),
    (["serve", "--trusted-proxy-headers", "forwarded"], 2, "Error: --trusted-proxy-headers needs --trusted-proxy"),
    (["serve", "--request-timeout", "0"], 2, "Error: Invalid value for '--request-timeout': 0.0 is not in the range "
                                             "x>0"),
    (["serve", "--host", "127.0.0.1", "--port", "{busy}"], 1, "Error: Cannot listen on 127.0.0.1:{busy}: "),
    # register
    (["register", "missing.joblib", "--name", "x"], 2, "Error: Invalid value for 'PATH': File 'missing.joblib' "
                                                       "does not exist"),
    (["register", "model.joblib"], 2, "Error: Missing option '--name'"),
    (["register", "model.joblib", "--name", "x"], 2, "Error: Loading model.joblib runs any code inside it. If you "
                                                     "trust where it came from, run again with --trust"),
    (["register", "junk.joblib", "--name", "x", "--trust", "--model-dir", "registry"], 1,
     "Error: Not a readable joblib file: junk.joblib"),
    (["register", "folder.csv", "--name", "x", "--trust"], 2, "Error: Invalid value for 'PATH': File 'folder.csv' "
                                                              "is a directory"),
    (["register", "model.joblib", "--name", "../outside", "--trust", "--model-dir", "registry"], 2,
     "Error: --name '../outside' must be one folder name"),
    (["register", "model.joblib", "--name", "x", "--version", "1/2", "--trust", "--model-dir", "registry"], 2,
     "Error: --version '1/2' must be one folder name"),
    # export-onnx
    (["export-onnx", "nope", "--model-dir", "registry"], 1, "Error: No model 'nope' registered in {folder}/registry "
                                                            "(--model-dir); registered there: none."),
    (["export-onnx", "iris", "--model-dir", "nowhere"], 2, "Error: Invalid value for '--model-dir': Directory "
                                                           "'nowhere' does not exist"),
    # predict-file
    (["predict-file", "ok.csv"], 2, "Error: Missing option '--out'"),
    (["predict-file", "missing.csv", "--out", "o.csv"], 1, "Error: Input file missing.csv does not exist."),
    (["predict-file", "folder.csv", "--out", "o.csv"], 1, "Error: Input folder.csv is a folder; give a file"),
    (["predict-file", "ok.xlsx", "--out", "o.csv"], 1, "Error: Cannot tell the format of 'ok.xlsx'"),
    (["predict-file", "ok.csv", "--out", "o.json"], 1, "Error: Cannot tell the format of 'o.json'"),
    (["predict-file", "ok.csv", "--out", "ok.csv"], 1, "Error: ok.csv already exists; pass --force to replace it."),
    (["predict-file", "ok.csv", "--out", "ok.csv/o.csv"], 1, "Error: Cannot write under ok.csv: it is a file, "
                                                             "not a folder."),
    (["predict-file", "empty.csv", "--out", "o.csv"], 1, "Error: empty.csv is empty: a CSV file starts with a "
                                                         "header row naming its columns."),
    (["predict-file", "latin.csv", "--out", "o.csv"], 1, "Error: Cannot read latin.csv as CSV: byte 0 is not "
                                                         "UTF-8 text."),
    (["predict-file", "quoted.csv", "--out", "o.csv"], 1, "Error: Cannot read quoted.csv as CSV: Error tokenizing"),
    (["predict-file", "bad.parquet", "--out", "o.csv"], 1, "Error: Cannot read bad.parquet as Parquet: "),
    (["predict-file", "ok.csv", "--out", "o.csv", "--model", "nope"], 1, "Error: No model named 'nope'; known "
                                                                         "models: iris."),
    (["predict-file", "ok.csv", "--out", "o.csv", "--chunk-size", "0"], 2, "Error: Invalid value for "
                                                                           "'--chunk-size': 0 is not in the range"),
    (["predict-file", "ok.csv", "--out", "o.csv", "--on-error", "ignore"], 2, "Error: Invalid value for "
                                                                              "'--on-error': 'ignore' is not one of"),
    (["predict-file", "ok.csv", "--out", "o.csv", "--scheduler", "tcp://127.0.0.1:1"], 2,
     "Error: --scheduler needs --engine dask"),
    (["predict-file", "nothing*.csv", "--out", "o", "--engine", "dask"], 1, "Error: nothing*.csv matches no files."),
    (["predict-file", "empty.csv", "--out", "o", "--engine", "dask"], 1, "Error: empty.csv is empty"),
    (["predict-file", "bad.parquet", "--out", "o", "--engine", "dask"], 1, "Error: Cannot read bad.parquet as "
                                                                           "Parquet: "),
    (["predict-file", "ok.csv", "--out", "o", "--engine", "dask", "--scheduler", "nonsense"], 1,
     "Error: --scheduler 'nonsense' is not a scheduler address (missing port number in address 'nonsense'); "
     "give one like tcp://10.0.0.5:8786."),
    # keygen and sign
    (["keygen"], 2, "Error: Missing option '--out'"),
    (["keygen", "--out", "junk.joblib"], 1, "Error: junk.joblib exists; not overwriting a key"),
    (["keygen", "--out", "ok.csv/signing.key"], 1, "Error: Cannot write the key pair ok.csv/signing.key: ok.csv is "
                                                   "a file, not a folder."),
    (["sign", "model.joblib", "--key", "bad.key"], 1, "Error: bad.key is not a PEM (PKCS8) private key"),
    (["sign", "model.joblib", "--key", "nokey"], 1, "Error: The private key file nokey does not exist"),
    (["sign", "model.joblib"], 2, "Error: Missing option '--key'"),
]


@pytest.mark.parametrize(("args", "code", "start"), CASES, ids=[" ".join(case[0]) for case in CASES])
def test_a_mistake_is_one_error_line(folder, busy_port, args, code, start):
    args = [arg.format(busy=busy_port) for arg in args]
    result = run_cli(folder, args)
    assert result.returncode == code, result.stderr
    assert only_error_line(result).startswith(start.format(folder=folder, busy=busy_port))
    assert result.stdout == ""


def test_an_unreachable_scheduler_is_one_line_after_the_connect_timeout(folder):
    port = _closed_port()
    result = run_cli(folder, ["predict-file", "ok.csv", "--out", "o", "--engine", "dask",
                              "--scheduler", f"tcp://127.0.0.1:{port}"])
    assert result.returncode == 1
    assert only_error_line(result) == f"Error: Cannot reach the Dask scheduler at tcp://127.0.0.1:{port} within 5 s."
    assert not (folder / "o").exists()


@contextmanager
def not_a_scheduler(answer: bytes | None) -> Iterator[int]:
    """A loopback listener that is no Dask scheduler, on a port it yields; stopped by its handle on exit.

    It answers each connection with ``answer`` (an HTTP server's reply) and closes it,
    or, with None, accepts and says nothing, holding the connection open.
    """
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop, held = threading.Event(), []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            if answer is None:
                held.append(conn)
                continue
            with contextlib.suppress(OSError):
                conn.sendall(answer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
         "Error: {address} answered, but not as a Dask scheduler: is it a Dask scheduler's address? (schedulers "
         "listen on port 8786 unless told otherwise)"),
        (None, "Error: {address} accepted the connection but sent no Dask handshake within 5 s: is it a Dask "
               "scheduler's address? (schedulers listen on port 8786 unless told otherwise)"),
    ],
    ids=["answers-garbage", "stays-silent"],
)
def test_a_scheduler_address_where_something_else_listens_is_one_line(folder, answer, message):
    with not_a_scheduler(answer) as port:
        address = f"tcp://127.0.0.1:{port}"
        started = time.monotonic()
        result = run_cli(folder, ["predict-file", "ok.csv", "--out", "o", "--engine", "dask", "--scheduler", address])
        took = time.monotonic() - started
    assert result.returncode == 1
    assert only_error_line(result) == message.format(address=address)
    assert took < 60  # the connect timeout (5 s) and start-up, not Dask's 30 s or for ever
    assert not (folder / "o").exists()


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("args", [["serve", "--port", "0"], ["predict-file", "ok.csv", "--out", "o.csv"]],
                         ids=["serve", "predict-file"])
def test_a_missing_model_file_is_reported_once_with_its_absolute_path_and_setting(folder, args):
    env = cli_env(folder, IRIS_SERVICE_ENV="production", IRIS_SERVICE_MODEL_PATH="models/gone.joblib")
    result = run_cli(folder, args, env=env)
    assert result.returncode == 1
    target = folder / "models" / "gone.joblib"
    assert only_error_line(result) == (
        f"Error: MODEL_PATH points at {target}, which does not exist; train one there with "
        f"'iris-service train --out {target}' or fix the setting."
    )


def test_a_missing_development_model_says_it_is_the_default_and_how_to_make_it(folder):
    env = cli_env(folder)
    del env["IRIS_SERVICE_MODEL_PATH"]
    result = run_cli(folder, ["predict-file", "ok.csv", "--out", "o.csv"], env=env)
    assert result.returncode == 1
    assert only_error_line(result) == (
        f"Error: MODEL_PATH is the development model {folder / 'instance' / 'iris_model.joblib'} (nothing else is "
        "configured), which does not exist yet; train it with 'iris-service train' or set IRIS_SERVICE_MODEL_PATH."
    )


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("IRIS_SERVICE_MODELS", '{"a": "registry"}', "Error: MODELS['a'] points at {folder}/registry, which is a "
                                                     "folder; name the artifact file in it"),
        ("IRIS_SERVICE_MODEL_DIR", "nowhere", "Error: MODEL_DIR points at {folder}/nowhere, which does not exist"),
        ("IRIS_SERVICE_MODEL_DIR", "ok.csv", "Error: MODEL_DIR points at {folder}/ok.csv, which is a file"),
    ],
    ids=["models-folder", "dir-missing", "dir-file"],
)
def test_production_names_the_model_setting_and_path_that_is_wrong(folder, setting, value, message):
    env = cli_env(folder, IRIS_SERVICE_ENV="production", **{setting: value})
    del env["IRIS_SERVICE_MODEL_PATH"]
    result = run_cli(folder, ["serve", "--port", "0"], env=env)
    assert result.returncode == 1
    assert only_error_line(result).startswith(message.format(folder=folder))


#: ``python -c``: refuse to import the modules named in argv[1], then run the command line.
BLOCKER = """
import sys
blocked = set(sys.argv[1].split(","))
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Refuse())
from iris_service.cli import main
main(sys.argv[2:], prog_name="iris-service")
"""


@pytest.mark.parametrize(
    ("blocked", "args", "needs", "extra"),
    [
        # A forest is explained by shap's TreeSHAP (a linear model needs no extra).
        ("shap", ["predict-file", "ok.csv", "--out", "o.csv", "--explain", "--model", "forest"],
         "Explaining a RandomForestClassifier needs shap", "explain"),
        ("pandas", ["predict-file", "ok.csv", "--out", "o.csv"], "iris-service predict-file needs pandas", "files"),
        ("pyarrow", ["predict-file", "ok.csv", "--out", "o.parquet"], "iris-service predict-file needs pyarrow",
         "files"),
        ("dask", ["predict-file", "ok.csv", "--out", "o", "--engine", "dask"],
         "iris-service predict-file --engine dask needs dask", "dask"),
        ("distributed", ["predict-file", "ok.csv", "--out", "o", "--engine", "dask"],
         "iris-service predict-file --engine dask needs distributed", "dask"),
        ("skl2onnx", ["train", "--format", "onnx", "--out", "m.onnx"], "iris-service train --format onnx needs "
                                                                       "skl2onnx", "onnx"),
        ("skops", ["train", "--format", "skops", "--out", "m.skops"], "iris-service train --format skops needs skops",
         "skops"),
    ],
    ids=["shap", "pandas", "pyarrow", "dask", "distributed", "skl2onnx", "skops"],
)
def test_a_missing_extra_names_it_and_how_to_install_it(folder, blocked, args, needs, extra):
    env = cli_env(folder, IRIS_SERVICE_MODELS=f'{{"forest": "{folder / "forest" / "model.joblib"}"}}')
    result = run_cli(folder, [blocked, *args], env=env, prefix=("-c", BLOCKER))
    assert result.returncode == 1
    assert only_error_line(result) == (
        f"Error: {needs}, from the '{extra}' extra: pip install 'iris-service[{extra}]' "
        f"(from a checkout: pip install -e '.[{extra}]')."
    )


def test_export_onnx_without_skl2onnx_names_the_onnx_extra(folder, tmp_path):
    registry = tmp_path / "models"
    registered = run_cli(folder, ["register", "model.joblib", "--name", "iris", "--version", "1", "--trust",
                                  "--model-dir", str(registry)])
    assert registered.returncode == 0, registered.stderr
    result = run_cli(folder, ["skl2onnx", "export-onnx", "iris", "--model-dir", str(registry)],
                     prefix=("-c", BLOCKER))
    assert result.returncode == 1
    assert only_error_line(result) == (
        "Error: iris-service export-onnx needs skl2onnx, from the 'onnx' extra: pip install 'iris-service[onnx]' "
        "(from a checkout: pip install -e '.[onnx]')."
    )



def test_register_never_writes_outside_the_model_dir(folder, tmp_path):
    registry = tmp_path / "models"
    result = run_cli(folder, ["register", "model.joblib", "--name", "../outside", "--version", "1", "--trust",
                              "--model-dir", str(registry)])
    assert result.returncode == 2
    assert not (tmp_path / "outside").exists() and not registry.exists()


def test_a_model_that_fails_to_load_is_one_line_naming_why(folder, tmp_path):
    tampered = tmp_path / "model.joblib"
    shutil.copy(folder / "model.joblib", tampered)
    shutil.copy(manifest_path(folder / "model.joblib"), manifest_path(tampered))
    tampered.write_bytes(tampered.read_bytes() + b"x")
    result = run_cli(folder, ["predict-file", "ok.csv", "--out", "o.csv"],
                     env=cli_env(folder, IRIS_SERVICE_MODEL_PATH=str(tampered)))
    assert result.returncode == 1
    line = only_error_line(result)
    assert line.startswith("Error: Model 'iris' is not loaded: SHA-256 mismatch for model.joblib: the manifest says ")
    assert line.endswith("the file differs. Refusing to load it.")


def test_a_model_that_fails_beside_the_one_scored_is_a_warning(folder, tmp_path):
    tampered = tmp_path / "other" / "model.joblib"
    tampered.parent.mkdir()
    shutil.copy(folder / "model.joblib", tampered)
    shutil.copy(manifest_path(folder / "model.joblib"), manifest_path(tampered))
    tampered.write_bytes(tampered.read_bytes() + b"x")
    out = tmp_path / "scored.csv"
    result = run_cli(folder, ["predict-file", "ok.csv", "--out", str(out), "--model", "iris"],
                     env=cli_env(folder, IRIS_SERVICE_MODELS=f'{{"other": "{tampered}"}}'))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: model other failed to load: SHA-256 mismatch for model.joblib: the manifest says "
        + read_manifest(tampered).sha256 + ", the file differs. Refusing to load it."
    ]
    assert out.is_file()
