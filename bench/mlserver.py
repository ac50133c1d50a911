"""MLServer 1.7 with its scikit-learn runtime, in a venv of its own, serving the same model.

MLServer pins its own FastAPI, pydantic and uvicorn, so it gets its own venv
(``bench/results/venvs/mlserver``, git-ignored), created and filled once: a
marker file says it is complete, and later runs skip the install. The model
is the one ours serves, fitted again in that venv (the same
``LogisticRegression(max_iter=200, random_state=42)`` on the same stratified
80% split as ``python -m training``) so that MLServer's scikit-learn loads a
file its own version wrote. MLServer runs with its default settings; only
the host and ports are set (by ``MLSERVER_*`` variables, which a
``settings.json`` would override, so none is written). If anything here
fails, the bench says so in one line and runs the other servers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

VERSION = "1.7"
#: MLServer 1.7's inference workers call asyncio.get_event_loop() in a fresh process, which
#: uvloop 0.22 turned into an error (the model then fails to load): keep the uvloop it was released with.
REQUIREMENTS = (f"mlserver=={VERSION}.*", f"mlserver-sklearn=={VERSION}.*", "uvloop<0.22")
INSTALL_TIMEOUT_S = 1200
TRAIN_TIMEOUT_S = 300
MODEL_NAME = "iris"

_TRAIN = """
import sys, joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
x, y = load_iris(return_X_y=True)
x_train, _, y_train, _ = train_test_split(x, y, test_size=0.2, random_state=42, stratify=y)
joblib.dump(LogisticRegression(max_iter=200, random_state=42).fit(x_train, y_train), sys.argv[1])
"""


@dataclass(frozen=True)
class Prepared:
    """The MLServer command and model repository, or why there is none."""

    executable: Path | None
    repository: Path | None
    reason: str = ""


def _run(command: list[str], timeout: float) -> str:
    """Run ``command``; the last line of its error output if it failed, else ''."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return ""
    lines = [x for x in (done.stderr or done.stdout).strip().splitlines() if not x.startswith("WARNING")]
    return lines[-1] if lines else f"exit code {done.returncode}"


def ensure_venv(venv: Path, say: object = print) -> str:
    """Create ``venv`` and install MLServer into it unless a previous run did; '' or why not."""
    marker = venv / f".installed-{VERSION}"
    if marker.exists():
        return ""
    python = venv / "bin" / "python"
    if not python.exists():
        failure = _run([sys.executable, "-m", "venv", str(venv)], 120)
        if failure:
            return f"cannot create {venv}: {failure}"
    say(f"installing MLServer {VERSION} into {venv} (once) ...")  # type: ignore[operator]
    failure = _run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], INSTALL_TIMEOUT_S)
    if failure:
        return f"pip install {' '.join(REQUIREMENTS)} failed: {failure}"
    marker.write_text(" ".join(REQUIREMENTS) + "\n")
    return ""


def write_repository(venv: Path, repository: Path) -> str:
    """The model repository MLServer starts from: ``iris/model.joblib`` and its model-settings.json."""
    model_dir = repository / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    failure = _run([str(venv / "bin" / "python"), "-c", _TRAIN, str(model_dir / "model.joblib")], TRAIN_TIMEOUT_S)
    if failure:
        return f"cannot train the model in {venv}: {failure}"
    settings = {"name": MODEL_NAME, "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib"}}
    (model_dir / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    return ""


def prepare(venv: Path, repository: Path, say: object = print) -> Prepared:
    """The venv (installed once) and a fresh model repository; a reason instead when either fails."""
    failure = ensure_venv(venv, say) or write_repository(venv, repository)
    if failure:
        return Prepared(None, None, failure)
    return Prepared(venv / "bin" / "mlserver", repository)


#: The environment MLServer is started with: loopback only, the ports the bench picked.
ENV = {
    "MLSERVER_HOST": "127.0.0.1",
    "MLSERVER_HTTP_PORT": "{port}",
    "MLSERVER_GRPC_PORT": "{grpc_port}",
    "MLSERVER_METRICS_PORT": "{metrics_port}",
}
