"""Bring your own model: describe a pickled estimator and file it in the registry."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from ..errors import ArtifactError
from .background import read_background, with_explanation_data
from .files import format_for, write_artifact
from .formats import check_content
from .manifest import Manifest, describe_estimator
from .profile import with_profile
from .trees import check_trees


def register_pickle(
    path: Path, *, name: str, version: str, folder: Path, background: Path | None = None
) -> tuple[Manifest, Path]:
    """Load a trusted pickle once, infer its manifest, copy it into ``folder``.

    The bytes are copied unchanged (not re-pickled), so the digest in the
    manifest is the digest of exactly what the user handed over. ``background``
    (a CSV of training rows) stores what explanations need and the deciles drift
    tracking compares served rows with in the manifest.
    """
    import joblib

    fmt = format_for(path)
    if fmt not in ("joblib", "pickle"):
        raise ArtifactError(f"register takes joblib/pickle files; {path.name} is {fmt}.")
    data = path.read_bytes()
    check_content(path.name, fmt, data)  # a skops or ONNX file renamed .pkl is not unpickled
    try:
        estimator = joblib.load(io.BytesIO(data))
    except Exception as exc:
        raise ArtifactError(f"Cannot load {path.name}: {exc}") from None
    if not hasattr(estimator, "predict"):
        raise ArtifactError(f"{path.name} holds a {type(estimator).__name__}, which has no predict().")
    manifest = describe_estimator(estimator, name=name, version=version, fmt=fmt, source="register")
    if background is not None:  # --background: training rows, for explanations and drift tracking
        rows = read_background(background, manifest.feature_names)
        manifest = with_explanation_data(manifest, rows, background.name)
        manifest = with_profile(manifest, rows)
    check_trees(estimator, manifest.n_features, artifact=path.name)  # a forged tree crashes the test below
    try:  # a model that cannot answer one row should not be registered
        with warnings.catch_warnings():  # numpy input to a DataFrame-fitted model warns
            warnings.simplefilter("ignore", UserWarning)
            estimator.predict(np.zeros((1, manifest.n_features)))
    except Exception as exc:
        raise ArtifactError(f"{path.name} failed a test prediction on {manifest.n_features} zeros: {exc}") from None
    target = folder / f"model{path.suffix.lower()}"
    return write_artifact(target, data, manifest), target
