"""Each feature's training deciles in the manifest: what drift tracking compares served rows with.

``train`` adds to every ``input_schema`` entry the nine deciles of its column
in the training rows and the share of training rows in each bin they cut
(bins close on the right, like Prometheus' ``le`` buckets). The shares are
stored, not assumed to be a tenth each: Iris has many ties (a third of its
petal widths are 0.2), so deciles repeat and collapse bins. The profile lives
in the manifest's bytes, so a signature (``TRUSTED_KEYS``) covers it, and
``read_profile`` refuses one that does not add up, naming the feature.

``iris-service register`` of an existing estimator has no training rows, so it
writes no profile: drift is not tracked for such a model and
``GET /models/<name>/drift`` says why.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ArtifactError
from .manifest import Manifest

DECILES = tuple(q / 10 for q in range(1, 10))
#: How far stored shares may be from summing to one (they are rounded JSON floats).
_SHARE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class FeatureProfile:
    """One feature's training distribution: range, bin edges (unique deciles) and bin shares."""

    name: str
    low: float
    high: float
    deciles: tuple[float, ...]
    edges: tuple[float, ...]  # the unique deciles, ascending: len(edges) + 1 bins
    shares: tuple[float, ...]


def with_profile(manifest: Manifest, x_train: npt.ArrayLike) -> Manifest:
    """``manifest`` with each feature's deciles and bin shares of ``x_train`` in its ``input_schema``."""
    x = np.asarray(x_train, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != manifest.n_features or len(x) == 0:
        raise ArtifactError(f"A training profile needs rows of {manifest.n_features} features; got shape {x.shape}.")
    schema = {item.get("name"): dict(item) for item in manifest.input_schema if isinstance(item, Mapping)}
    entries = []
    for j, name in enumerate(manifest.feature_names):
        column = x[:, j]
        # 12 significant digits: 1.92, not the interpolation's 1.9200000000000002, as a bucket bound.
        deciles = [float(f"{v:.12g}") for v in np.quantile(column, DECILES)]
        edges = np.unique(deciles)
        counts = np.bincount(np.searchsorted(edges, column, side="left"), minlength=len(edges) + 1)
        entry = schema.get(name, {"name": name, "min": None, "max": None})
        if entry.get("min") is None or entry.get("max") is None:
            # A registered estimator's schema has no ranges: the rows that give the
            # deciles give the training min and max too (and INPUT_RANGE_POLICY its bounds).
            entry["min"], entry["max"] = float(column.min()), float(column.max())
        entry["deciles"] = deciles
        entry["decile_shares"] = [float(c) / len(column) for c in counts]
        entries.append(entry)
    return dataclasses.replace(manifest, input_schema=tuple(entries))


def read_profile(manifest: Manifest) -> tuple[FeatureProfile, ...] | None:
    """Every feature's profile from the manifest, or None when it has none (a registered estimator).

    A profile on some features but not others, or one whose numbers do not
    add up, is refused: drift figures from it would be quietly wrong.
    """
    items = {item.get("name"): item for item in manifest.input_schema if isinstance(item, Mapping)}
    found = [items.get(name, {}) for name in manifest.feature_names]
    if not any("deciles" in item for item in found):
        return None
    return tuple(_feature(manifest, name, item) for name, item in zip(manifest.feature_names, found, strict=True))


def _feature(manifest: Manifest, name: str, item: Mapping[str, Any]) -> FeatureProfile:
    def bad(why: str) -> ArtifactError:
        return ArtifactError(f"Manifest of {manifest.name!r} version {manifest.version!r}: the training "
                             f"profile of {name!r} {why}; retrain or restore the manifest.")

    deciles, shares = item.get("deciles"), item.get("decile_shares")
    low, high = item.get("min"), item.get("max")
    if not _numbers(deciles, len(DECILES)) or any(b < a for a, b in zip(deciles, deciles[1:], strict=False)):
        raise bad("needs nine ascending finite deciles")
    if not _numbers([low, high], 2) or not low <= deciles[0] <= deciles[-1] <= high:
        raise bad("needs a finite min and max around its deciles")
    edges = tuple(float(v) for v in np.unique(deciles))
    if not _numbers(shares, len(edges) + 1) or min(shares) < 0 or abs(sum(shares) - 1) > _SHARE_TOLERANCE:
        raise bad(f"needs {len(edges) + 1} bin shares that add up to 1")
    return FeatureProfile(name, float(low), float(high), tuple(map(float, deciles)), edges, tuple(shares))


def _numbers(values: Any, count: int) -> bool:
    return (
        isinstance(values, Sequence) and not isinstance(values, str) and len(values) == count
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    )
