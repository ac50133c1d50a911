"""The documentation: the site builds with no broken link or anchor, and Getting started runs as written.

Every command in the ``bash`` blocks of ``docs/getting-started.md`` is run in a fresh copy of the
repository (never in the checkout under test), with ``make run`` serving on a free loopback port
through the ``PORT`` variable the Makefile honours; the page's ``127.0.0.1:5000`` is that port.
To keep this to seconds rather than a full install, the copy's ``.venv`` is created beforehand and
sees this interpreter's installed dependencies (a ``.pth`` line): ``make run`` and ``pip install -e``
then still install the copy itself, as written, but download nothing.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
import requests
from conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
GETTING_STARTED = ROOT / "docs" / "getting-started.md"
#: Commands that start a server: run in the background until the page is done.
SERVER_COMMANDS = ("make run",)
#: The one shell command the page shows that this test does not run: it would run this test again.
NOT_RUN = ["make test"]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: The page's sentence naming make run's server, and the line that server prints when it listens.
_PAGE_SERVER = re.compile(r"serves it with (\w+) on http://127\.0\.0\.1:5000 \((\d+) worker, (\d+) threads\)")
_LOG_SERVER = re.compile(r"iris-service serving on http://127\.0\.0\.1:(\d+) \((\w+), (\d+) worker\(s\) x (\d+) thread\(s\)\)")


def fenced_blocks(text: str, language: str) -> list[str]:
    """The bodies of the page's fenced blocks in ``language``, in order."""
    return [body for lang, body in _FENCE.findall(text) if lang == language]


def commands(block: str) -> list[str]:
    """A block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = block.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def build_site(config: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )


def test_the_site_builds_strict_with_every_page(tmp_path: Path) -> None:
    result = build_site(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr
    pages = {p.name for p in (tmp_path / "site").glob("*.html")}
    for doc in (ROOT / "docs").glob("*.md"):
        assert doc.with_suffix(".html").name in pages, doc.name
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "make run" in home and 'href="serving.html"' in home  # the README, its links made site-relative
    assert "SECURITY.md" in home


def test_a_broken_anchor_fails_the_build(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    page = tmp_path / "docs" / "api.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nSee [nothing](serving.md#no-such-section).\n",
                    encoding="utf-8")
    result = build_site(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-section" in result.stderr


def test_getting_started_shows_the_compatibility_calls() -> None:
    text = GETTING_STARTED.read_text(encoding="utf-8")
    shown = [command for block in fenced_blocks(text, "bash") for command in commands(block)]
    assert shown[0] == "make run"
    assert ("curl -X POST http://127.0.0.1:5000/predict -H \"Content-Type: application/json\" "
            "-d '{\"features\": [5.1, 3.5, 1.4, 0.2]}'") in shown
    assert "curl http://127.0.0.1:5000/health" in shown
    # What the run below replaces with its free port (and passes to make run as PORT):
    assert "and serves it with granian on http://127.0.0.1:5000 (1 worker, 2 threads)" in " ".join(text.split())
    # The only shell command not in a bash block (so not run below) is make test.
    assert [c for block in fenced_blocks(text, "sh") for c in commands(block)] == NOT_RUN


def _copy_checkout(dest: Path) -> None:
    """The repository's files as a user's checkout has them (tracked and new, not ignored)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def _seed_venv(checkout: Path) -> None:
    """``.venv`` with this interpreter's dependencies visible, so installs find them already there."""
    subprocess.run([sys.executable, "-m", "venv", str(checkout / ".venv")], check=True, timeout=120)
    site = subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site) / "_iris_test_dependencies.pth").write_text("\n".join(paths) + "\n", encoding="utf-8")


def _user_env(port: int) -> dict[str, str]:
    """A user's shell: no settings of ours, no active virtual environment, ``PORT`` for make run."""
    # Under `make test` the suite inherits make's own variables; a user's `make run` does not.
    outer = ("IRIS_SERVICE_", "VIRTUAL_ENV", "PYTHON", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(outer)}
    return {**env, "PORT": str(port), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server a test started: its process group (make or bash, and the server it runs)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.skipif(sys.platform == "win32", reason="the page's bash commands are for Linux and macOS")
def test_every_getting_started_command_runs_as_written(tmp_path: Path) -> None:
    checkout = tmp_path / "iris-service"
    _copy_checkout(checkout)
    _seed_venv(checkout)
    port = free_port()
    env = _user_env(port)
    state = tmp_path / "exported.sh"  # what one block exports (activate, export) reaches the next
    state.write_text("", encoding="utf-8")
    servers: list[subprocess.Popen[bytes]] = []
    outputs: list[str] = []
    text = GETTING_STARTED.read_text(encoding="utf-8").replace("127.0.0.1:5000", f"127.0.0.1:{port}")
    try:
        for block in fenced_blocks(text, "bash"):
            script = "\n".join(commands(block))
            if script in SERVER_COMMANDS:
                log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - the server writes it while it runs
                servers.append(subprocess.Popen(["bash", "-c", f". {state}; exec {script}"], cwd=checkout,
                                                env=env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True))
                log.close()
                _wait_live(port, servers[-1], tmp_path / "server.log")
                continue
            result = subprocess.run(
                ["bash", "-c", f"set -eo pipefail\n. {state}\n{script}\nexport -p > {state}"],
                cwd=checkout, env=env, capture_output=True, text=True, timeout=300,
            )
            assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
            outputs.append(result.stdout)
    finally:
        for proc in servers:
            stop_group(proc)
    calls = outputs[0]
    assert '"prediction":0,"label":"setosa"' in calls and '"status":"API is running!"' in calls
    assert '"prediction":2,"label":"virginica"' in outputs[1]
    header = "sepal_length,sepal_width,petal_length,petal_width,id,prediction,label,proba_setosa,proba_versicolor,proba_virginica"
    assert header in GETTING_STARTED.read_text(encoding="utf-8")
    assert (checkout / "scored.csv").read_text(encoding="utf-8").splitlines()[0] == header
    forest = (checkout / "scored-forest.csv").read_text(encoding="utf-8").splitlines()
    assert len(forest) == 7 and forest[1].startswith("5.1,3.5,1.4,0.2,a1,0,setosa,")
    served = (tmp_path / "server.log").read_text(encoding="utf-8")
    # The page says make run logs one text line per request.
    assert re.search(r"INFO \w+ POST /predict 200 ", served)
    # ... and names the server make run starts, its workers and threads: the one that printed its address.
    named = _PAGE_SERVER.search(" ".join(GETTING_STARTED.read_text(encoding="utf-8").split()))
    assert named, "the page no longer says which server make run starts"
    listening = _LOG_SERVER.search(served)
    assert listening, served
    assert listening.groups() == (str(port), *named.groups()), served


def _wait_live(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 240.0) -> None:
    """Until make run's server answers /health/live (it installs and trains first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"make run exited with {proc.returncode}:\n{log.read_text(encoding='utf-8')}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"make run did not serve within {timeout:.0f} s:\n{log.read_text(encoding='utf-8')}")
