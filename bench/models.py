"""Model artifacts and request bodies the bench makes for itself in a temp dir.

The reference apps get a plain ``joblib.dump`` of what tutorials train;
iris-service gets artifacts from its own training CLI, so the bench measures
what a user would deploy.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import numpy.typing as npt
import orjson
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

TRAIN_TIMEOUT_S = 300
ONE_ROW = [5.1, 3.5, 1.4, 0.2]


@dataclass(frozen=True)
class OursCheck:
    """Whether iris-service can be run here, and if not, why."""

    available: bool
    reason: str = ""


def iris_rows(n: int) -> npt.NDArray[np.float64]:
    """``n`` real iris rows, the 150 samples repeated in order."""
    x, _ = load_iris(return_X_y=True)
    return np.resize(x.astype(np.float64), (n, x.shape[1]))


def train_reference(path: Path) -> Path:
    """What tutorials train: LogisticRegression(max_iter=200) on iris, joblib.dump'ed."""
    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=200).fit(x, y), path)
    return path


#: The input tensor name iris-service's V2 endpoint takes for a whole row.
V2_INPUT = "input-0"


def v2_body(rows: npt.NDArray[np.float64]) -> bytes:
    """A V2 inference request for ``rows`` that asks for the classes and the probabilities."""
    tensor = {"name": V2_INPUT, "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}
    return orjson.dumps({"inputs": [tensor], "outputs": [{"name": "predict"}, {"name": "predict_proba"}]})


def write_bodies(
    directory: Path, batch_sizes: tuple[int, ...], v2_sizes: tuple[int, ...] = ()
) -> dict[str, Path]:
    """Request bodies by name: ``row`` (features), ``instances-N`` and ``v2-N`` (batches)."""
    bodies = {"row": orjson.dumps({"features": ONE_ROW})}
    for n in batch_sizes:
        bodies[f"instances-{n}"] = orjson.dumps({"instances": iris_rows(n).tolist()})
    for n in v2_sizes:
        bodies[f"v2-{n}"] = v2_body(iris_rows(n))
    paths = {}
    for name, body in bodies.items():
        paths[name] = directory / f"{name}.json"
        paths[name].write_bytes(body)
    return paths


def check_ours(cwd: Path, env: Mapping[str, str]) -> OursCheck:
    """Import iris_service and training in a child, as the servers will."""
    done = subprocess.run(
        [sys.executable, "-c", "import iris_service, training; iris_service.create_app"],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode == 0:
        return OursCheck(available=True)
    lines = done.stderr.strip().splitlines()
    return OursCheck(available=False, reason=lines[-1] if lines else f"exit code {done.returncode}")


def train_ours(path: Path, cwd: Path, env: Mapping[str, str], *extra: str) -> Path:
    """Train with iris-service's CLI: ``python -m training --out PATH [extra...]``."""
    done = subprocess.run(
        [sys.executable, "-m", "training", "--out", str(path), *extra],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=TRAIN_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"python -m training {' '.join(extra)} failed: {done.stderr.strip()[-500:]}")
    return path
