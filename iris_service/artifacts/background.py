"""What explanations need, stored in the manifest at train and register time: feature means and a background sample.

A linear model's contributions are measured from the training mean of each
feature, and a tree explainer is checked on rows like the ones it was trained
on; neither can be recomputed from the artifact alone. ``train`` stores them
from its training rows, ``register --background FILE`` from a CSV of the
user's training rows. The block carries a SHA-256 of its own canonical JSON,
checked before the artifact is read (``check_explanation_data``), so an edited
mean or row is refused like an edited artifact; with ``TRUSTED_KEYS`` the
signature over the manifest's bytes covers it too.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ArtifactError
from .manifest import Manifest, manifest_path

#: Rows kept as the background sample: enough to check an explainer, small enough for a manifest.
BACKGROUND_ROWS = 100
#: The sample is the same for the same rows: a fixed seed.
SEED = 0
#: Keys of the manifest's ``explain`` block that its digest covers.
COVERED = ("feature_names", "feature_means", "background", "rows", "source")


def with_explanation_data(manifest: Manifest, x: Any, source: str = "training rows") -> Manifest:
    """``manifest`` with the means of ``x`` and a sample of its rows in its ``explain`` block."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != manifest.n_features or not len(x):
        raise ArtifactError(
            f"Explanation data needs rows of {manifest.n_features} features; got an array of shape {x.shape}."
        )
    if not np.isfinite(x).all():
        raise ArtifactError("Explanation data must hold finite numbers only.")
    rows = np.random.default_rng(SEED).choice(len(x), size=min(BACKGROUND_ROWS, len(x)), replace=False)
    block: dict[str, Any] = {
        "feature_names": list(manifest.feature_names),
        "feature_means": [float(v) for v in x.mean(axis=0)],
        "background": x[np.sort(rows)].tolist(),
        "rows": int(len(x)),
        "source": source,
    }
    block["sha256"] = _digest(block)
    return dataclasses.replace(manifest, explain=block)


def read_background(path: Path, features: tuple[str, ...]) -> npt.NDArray[np.float64]:
    """The rows of a CSV whose header names every feature (other columns, such as a label, are ignored)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise ArtifactError(f"Background file {path.name} is empty.")
            header = [h.strip() for h in header]
            missing = [f for f in features if f not in header]
            if missing:
                raise ArtifactError(
                    f"Background file {path.name} has no column {', '.join(missing)}; its header must name "
                    f"the model's features: {', '.join(features)}."
                )
            columns = [header.index(f) for f in features]
            rows = [_row(line, columns, path.name, number) for number, line in enumerate(reader, start=2) if line]
    except OSError as exc:
        raise ArtifactError(f"Cannot read background file {path.name}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ArtifactError(f"Background file {path.name} is not a UTF-8 CSV file: {exc}") from None
    if not rows:
        raise ArtifactError(f"Background file {path.name} has a header but no rows.")
    return np.asarray(rows, dtype=np.float64)


def _row(line: list[str], columns: list[int], name: str, number: int) -> list[float]:
    values = []
    for column in columns:
        cell = line[column].strip() if column < len(line) else ""
        try:
            value = float(cell)
        except ValueError:
            raise ArtifactError(f"Background file {name}, line {number}: {cell!r} is not a number.") from None
        if not math.isfinite(value):
            raise ArtifactError(f"Background file {name}, line {number}: {cell!r} is not a finite number.")
        values.append(value)
    return values


def check_explanation_data(manifest: Manifest, artifact: str) -> None:
    """Refuse a manifest whose explanation data was edited, truncated or belongs to other features."""
    block = manifest.explain
    if not block:
        return
    name = manifest_path(Path(artifact)).name
    if block.get("sha256") != _digest(block):
        raise ArtifactError(
            f"Manifest {name}: the explanation data does not match its SHA-256. Refusing to load {artifact}."
        )
    width = manifest.n_features
    means, background = block.get("feature_means"), block.get("background")
    if (
        block.get("feature_names") != list(manifest.feature_names)
        or not _numbers(means, width)
        or not isinstance(background, list)
        or not background
        or not all(_numbers(row, width) for row in background)
    ):
        raise ArtifactError(
            f"Manifest {name}: the explanation data does not fit the model's {width} features. "
            f"Refusing to load {artifact}."
        )


def feature_means(manifest: Manifest) -> npt.NDArray[np.float64] | None:
    """The stored training means (None when the manifest has no explanation data)."""
    means = manifest.explain.get("feature_means") if manifest.explain else None
    return None if means is None else np.asarray(means, dtype=np.float64)


def background(manifest: Manifest) -> npt.NDArray[np.float64] | None:
    """The stored background rows (None when the manifest has no explanation data)."""
    rows = manifest.explain.get("background") if manifest.explain else None
    return None if rows is None else np.asarray(rows, dtype=np.float64).reshape(len(rows), manifest.n_features)


def _numbers(values: Any, width: int) -> bool:
    return (
        isinstance(values, list)
        and len(values) == width
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    )


def _digest(block: dict[str, Any]) -> str:
    covered = {key: block.get(key) for key in COVERED}
    return hashlib.sha256(json.dumps(covered, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
