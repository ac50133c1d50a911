"""Train the built-in models on the Iris data set and write verified artifacts.

``python -m training`` (or ``iris-service train``) fits a model with a fixed
seed, reports its held-out accuracy, and writes the artifact and its manifest
through ``iris_service.artifacts`` so the server can verify what it loads.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from iris_service.artifacts import (
    SUFFIX_FORMATS,
    Manifest,
    describe_estimator,
    dump_joblib,
    utc_now,
    write_artifact,
)
from iris_service.artifacts.background import with_explanation_data
from iris_service.artifacts.profile import with_profile

FEATURE_NAMES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
MODEL_KINDS = ("logreg", "random_forest")
DEFAULT_SEED = 42
TEST_SIZE = 0.2


@dataclass(frozen=True)
class TrainResult:
    path: Path
    manifest: Manifest
    accuracy: float


def build_estimator(kind: str, seed: int, n_estimators: int) -> Any:
    """The estimator for ``kind``: the tutorial's logistic regression or a forest."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if kind == "logreg":
        return LogisticRegression(max_iter=200, random_state=seed)
    if kind == "random_forest":
        return RandomForestClassifier(n_estimators=n_estimators, random_state=seed)
    raise ValueError(f"Unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}.")


def default_version() -> str:
    """A sortable version from the UTC time, so each training run is a new version."""
    return utc_now().replace("-", "").replace(":", "").replace("T", ".").split("+")[0]


def train(
    out: Path,
    *,
    kind: str = "logreg",
    name: str = "iris",
    version: str | None = None,
    seed: int = DEFAULT_SEED,
    n_estimators: int = 100,
    fmt: str = "joblib",
) -> TrainResult:
    """Fit ``kind`` on Iris, score it on a held-out split, write the artifact to ``out``."""
    from sklearn.datasets import load_iris
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split

    iris = load_iris()
    x = np.asarray(iris.data, dtype=np.float64)
    y = iris.target
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=seed, stratify=y
    )
    estimator = build_estimator(kind, seed, n_estimators)
    estimator.fit(x_train, y_train)
    accuracy = float(accuracy_score(y_test, estimator.predict(x_test)))
    manifest = describe_estimator(
        estimator,
        name=name,
        version=version or default_version(),
        fmt=fmt,
        feature_names=list(FEATURE_NAMES),
        class_names=[str(c) for c in iris.target_names],
        input_schema=[
            {"name": n, "min": float(lo), "max": float(hi)}
            for n, lo, hi in zip(FEATURE_NAMES, x.min(axis=0), x.max(axis=0), strict=True)
        ],
        training={
            "model": kind,
            "params": _json_params(estimator.get_params()),
            "seed": seed,
            "test_size": TEST_SIZE,
            "dataset": "sklearn.datasets.load_iris",
            "n_train": int(len(x_train)),
            "n_test": int(len(x_test)),
            # A typical row per class (feature-wise median of its training rows):
            # the demo page offers them as "fill in a <class>" buttons.
            "examples": {
                str(name): [float(v) for v in np.median(x_train[y_train == k], axis=0)]
                for k, name in enumerate(iris.target_names)
            },
        },
        metrics={"accuracy": accuracy},
    )
    manifest = with_profile(manifest, x_train)  # the deciles drift tracking compares served rows with
    manifest = with_explanation_data(manifest, x_train)  # the means and rows explanations start from
    out = Path(out)
    writer = WRITERS.get(fmt)
    if writer is None:
        raise ValueError(f"Unknown format {fmt!r}; choose one of {', '.join(WRITERS)}.")
    # The loader picks the format from the manifest but the registry from the suffix.
    if SUFFIX_FORMATS.get(out.suffix.lower()) not in ({fmt} | ({"pickle"} if fmt == "joblib" else set())):
        raise ValueError(f"A {fmt} artifact needs a .{fmt} file name, not {out.name}.")
    manifest = writer(out, estimator, manifest, x_train)
    return TrainResult(path=out, manifest=manifest, accuracy=accuracy)


def _write_joblib(out: Path, estimator: Any, manifest: Manifest, sample: Any) -> Manifest:
    return write_artifact(out, dump_joblib(estimator), manifest)


def _write_onnx(out: Path, estimator: Any, manifest: Manifest, sample: Any) -> Manifest:
    """Convert to ONNX and check the conversion on the training rows before writing."""
    from iris_service.runtime.onnx import write_onnx

    return write_onnx(out, estimator, manifest, sample, f"{len(sample)} training rows")


def _write_skops(out: Path, estimator: Any, manifest: Manifest, sample: Any) -> Manifest:
    from iris_service.artifacts.skops import dump_skops

    return write_artifact(out, dump_skops(estimator), manifest)


#: Format -> writer(out, estimator, manifest, training sample) -> written manifest.
WRITERS: Mapping[str, Callable[[Path, Any, Manifest, Any], Manifest]] = MappingProxyType(
    {"joblib": _write_joblib, "onnx": _write_onnx, "skops": _write_skops}
)


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if isinstance(v, str | int | float | bool | type(None))}
