"""Verified loading: nothing is unpickled before its SHA-256 matches the manifest.

An artifact is a model file (joblib/pickle, ONNX or skops; one loader per
format in ``LOADERS``) with a manifest beside it. Loading a pickle runs code
from the file, so the bytes that were hashed are the bytes that are loaded.
"""
from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..errors import ArtifactError
from ..extras import install_hint
from .background import check_explanation_data
from .files import PICKLE_FORMATS, sha256_bytes
from .formats import check_content, check_suffix
from .manifest import Manifest, read_described
from .trees import check_trees

if TYPE_CHECKING:
    from .signing import TrustedKey

#: Formats that load as scikit-learn objects (whose trees ``trees.check_trees`` checks).
SKLEARN_FORMATS = PICKLE_FORMATS | {"skops"}

log = logging.getLogger("iris_service.artifacts")


@dataclass(frozen=True)
class Artifact:
    """A verified, loaded model object and the manifest that vouched for it."""

    obj: Any
    manifest: Manifest
    path: Path


@dataclass(frozen=True)
class LoadOptions:
    """What the operator allows a load to accept; loaders read only what they need."""

    pickle_allowed: bool = True
    allow_version_mismatch: bool = False
    skops_trusted_types: tuple[str, ...] = ()
    #: With keys, every manifest must carry a signature by one of them (``signing``).
    trusted_keys: tuple[TrustedKey, ...] = ()


def load_verified(
    path: Path | str,
    *,
    pickle_allowed: bool = True,
    allow_version_mismatch: bool = False,
    skops_trusted_types: Sequence[str] = (),
    trusted_keys: Sequence[TrustedKey] = (),
) -> Artifact:
    """Load an artifact after checking its SHA-256 against the manifest.

    Unpickling runs code from the file, so the hash is checked first, on the
    same bytes that are then loaded (no window to swap the file in between),
    and the manifest's format is believed only when the file's name and first
    bytes say the same. Loaded scikit-learn objects serve only once their
    trees are sound (``trees.check_trees``): a forged node array crashes the process.
    With ``trusted_keys`` the manifest must also carry a signature by one of
    them (``signing``): whoever can write the folder can recompute a hash, but
    not sign one, and the signature is checked before the artifact is read.
    """
    options = LoadOptions(pickle_allowed, allow_version_mismatch, tuple(skops_trusted_types), tuple(trusted_keys))
    path = Path(path)
    raw_manifest, manifest = read_described(path)
    fmt = manifest.format
    loader = LOADERS.get(fmt)
    if loader is None:
        raise ArtifactError(f"No loader for artifact format {fmt!r} ({path.name}).")
    check_suffix(path, fmt)  # the file's name and the manifest agree before anything is read
    if fmt in PICKLE_FORMATS and not options.pickle_allowed:
        raise ArtifactError(
            f"{path.name} is a {fmt} artifact and PICKLE_ALLOWED is off; "
            "serve an ONNX or skops artifact instead (iris-service export-onnx)."
        )
    if options.trusted_keys:  # the signed manifest vouches for the digest before a byte of the artifact is read
        from .signing import verify_signature

        verify_signature(path, raw_manifest, manifest.sha256, options.trusted_keys)
    check_explanation_data(manifest, path.name)  # after the signature: a forged manifest is named as such
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"Cannot read artifact {path.name}: {exc.strerror or exc}") from None
    digest = sha256_bytes(data)
    if digest != manifest.sha256:
        # The file's own digest goes to the log only: answers (reload, readiness) never
        # publish the digest of whatever file the path happens to lead to.
        log.warning("SHA-256 of %s is %s; its manifest says %s", path.name, digest, manifest.sha256)
        raise ArtifactError(
            f"SHA-256 mismatch for {path.name}: the manifest says {manifest.sha256}, "
            "the file differs. Refusing to load it."
        )
    check_content(path.name, fmt, data)  # and so do its bytes, before any unpickling
    obj = loader(data, manifest, options)
    if fmt in SKLEARN_FORMATS:
        check_trees(obj, manifest.n_features, artifact=path.name)
    return Artifact(obj=obj, manifest=manifest, path=path)


def check_sklearn_version(manifest: Manifest, allow_mismatch: bool) -> None:
    """Refuse a model pickled by another scikit-learn minor version.

    Estimators' internals change between minor versions; an old pickle can load
    and then answer wrongly, which is worse than not loading.
    """
    import sklearn

    saved = manifest.versions.get("scikit-learn")
    if not saved:
        return
    if _minor(saved) == _minor(sklearn.__version__):
        return
    message = (
        f"{manifest.name} {manifest.version} was saved with scikit-learn {saved}; "
        f"this server runs {sklearn.__version__}."
    )
    if not allow_mismatch:
        raise ArtifactError(
            message + " Retrain or re-register it, or set ALLOW_VERSION_MISMATCH to serve it anyway."
        )
    log.warning("%s Serving it because ALLOW_VERSION_MISMATCH is set.", message)


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


@contextmanager
def version_guard(manifest: Manifest, allow_mismatch: bool) -> Iterator[None]:
    """Turn scikit-learn's InconsistentVersionWarning into refuse-or-log.

    scikit-learn only warns when an estimator comes from another version; left
    alone the warning scrolls past (or, under ``-W error``, crashes oddly), so it
    becomes the same decision as the manifest's version check.
    """
    from sklearn.exceptions import InconsistentVersionWarning

    check_sklearn_version(manifest, allow_mismatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        yield
    for warning in caught:
        if issubclass(warning.category, InconsistentVersionWarning):
            if not allow_mismatch:
                raise ArtifactError(
                    f"{manifest.artifact}: {warning.message} Set ALLOW_VERSION_MISMATCH to serve it anyway."
                )
            log.warning("%s: %s (ALLOW_VERSION_MISMATCH is set)", manifest.artifact, warning.message)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _load_joblib(data: bytes, manifest: Manifest, options: LoadOptions) -> Any:
    import joblib

    with version_guard(manifest, options.allow_version_mismatch):
        try:
            return joblib.load(io.BytesIO(data))
        except Exception as exc:  # a verified file that still fails to unpickle
            raise ArtifactError(f"Cannot unpickle {manifest.artifact}: {exc}") from None


def _load_onnx(data: bytes, manifest: Manifest, options: LoadOptions) -> Any:
    from .onnx import load_session

    for module in ("onnxruntime", "onnx"):  # an optional extra: say so, not ModuleNotFoundError
        _require(module, "onnx", manifest)
    return load_session(data, manifest)


def _load_skops(data: bytes, manifest: Manifest, options: LoadOptions) -> Any:
    from .skops import load_skops

    _require("skops", "skops", manifest)
    with version_guard(manifest, options.allow_version_mismatch):
        return load_skops(data, manifest, options.skops_trusted_types)


def _require(module: str, extra: str, manifest: Manifest) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ArtifactError(
            f"{manifest.artifact} is a {manifest.format} artifact and {module} is not installed: "
            f"{install_hint(extra)}."
        )


#: Format name -> loader(verified bytes, manifest, options) -> model object.
LOADERS: Mapping[str, Callable[[bytes, Manifest, LoadOptions], Any]] = MappingProxyType({
    "joblib": _load_joblib,
    "pickle": _load_joblib,
    "onnx": _load_onnx,
    "skops": _load_skops,
})
