"""The skops artifact format: scikit-learn models that load without running code.

``skops.io`` rebuilds an estimator from a schema instead of unpickling it, and
only instantiates types it is told to trust. We trust an explicit list, the
estimator types our training ships plus numpy's scalar and dtype types, and the
operator may add more with ``SKOPS_TRUSTED_TYPES``; an artifact holding anything
else is refused with the list of untrusted types.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ArtifactError
from .manifest import Manifest

#: Types loaded without asking. ``sklearn.tree._tree.Tree`` is here because we
#: ship random forests; skops flags it since a forged node array can make
#: predict read out of bounds, which the SHA-256 check in front of every load
#: guards against for files we wrote.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "numpy.dtype",
    "numpy.ndarray",
    "numpy.float64",
    "numpy.float32",
    "numpy.int64",
    "numpy.int32",
    "numpy.intp",
    "numpy.bool_",
    "numpy.str_",
)


def untrusted_types(data: bytes, extra_trusted: Sequence[str] = ()) -> list[str]:
    """Types in a skops file that neither skops' defaults nor our allow-list trust."""
    from skops.io import get_untrusted_types

    allowed = set(TRUSTED_TYPES) | set(extra_trusted)
    try:
        found = get_untrusted_types(data=data)
    except Exception as exc:  # not a skops file at all
        raise ArtifactError(f"Not a readable skops file: {exc}") from None
    return sorted(t for t in found if t not in allowed)


def load_skops(data: bytes, manifest: Manifest, extra_trusted: Sequence[str] = ()) -> Any:
    """Rebuild the estimator from verified bytes, trusting only the allow-list."""
    from skops.io import get_untrusted_types, loads

    refused = untrusted_types(data, extra_trusted)
    if refused:
        raise ArtifactError(
            f"{manifest.artifact} contains types that are not trusted: {', '.join(refused)}. "
            "Add them to SKOPS_TRUSTED_TYPES only if you trust where the file came from.",
            errors={"untrusted_types": refused},
        )
    # Everything flagged is on the allow-list by now; pass exactly those.
    try:
        return loads(data, trusted=get_untrusted_types(data=data))
    except Exception as exc:
        raise ArtifactError(f"Cannot load skops artifact {manifest.artifact}: {exc}") from None


def dump_skops(estimator: Any) -> bytes:
    """Serialise an estimator, refusing one our own loader would not trust."""
    from skops.io import dumps

    data = dumps(estimator)
    refused = untrusted_types(data)
    if refused:
        raise ArtifactError(
            f"{type(estimator).__name__} would need untrusted skops types: {', '.join(refused)}."
        )
    return data
