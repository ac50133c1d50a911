"""Artifacts on disk: the model file, its JSON manifest, and verified loading.

An artifact is a model file (joblib/pickle, ONNX or skops; one loader per
format in ``LOADERS``) with a manifest beside it named ``<file>.json``. Loading a pickle
runs code from the file, so nothing is unpickled before its SHA-256 matches the
manifest, and the bytes that were hashed are the bytes that are loaded.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import platform
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .errors import ArtifactError

if TYPE_CHECKING:
    from .signing import TrustedKey

log = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
PICKLE_FORMATS = frozenset({"joblib", "pickle"})
#: File suffix -> artifact format.
SUFFIX_FORMATS: Mapping[str, str] = MappingProxyType(
    {".joblib": "joblib", ".pkl": "pickle", ".pickle": "pickle", ".onnx": "onnx", ".skops": "skops"}
)


@dataclass(frozen=True)
class Manifest:
    """What we know about an artifact without loading it."""

    name: str
    version: str
    artifact: str  # file name, relative to the manifest's folder
    format: str
    sha256: str
    estimator: str
    task: str  # "classification" or "regression"
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...] | None = None
    classes: tuple[Any, ...] | None = None  # the estimator's classes_, JSON-safe
    input_schema: tuple[dict[str, Any], ...] = ()
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    source: str | None = None  # what produced it: "training", "register", "export-onnx"
    manifest_format: int = MANIFEST_FORMAT

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()}

    def public(self) -> dict[str, Any]:
        """The manifest as clients may see it: no file system paths."""
        data = self.to_dict()
        data.pop("artifact", None)
        data["n_features"] = self.n_features
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
            and f.name not in data
        ]
        if missing:
            raise ValueError(f"missing keys: {', '.join(missing)}")
        _check_types(data)
        values = {k: v for k, v in data.items() if k in known}
        for key in ("feature_names", "class_names", "classes", "input_schema"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        values["version"] = str(values["version"])
        return cls(**values)


def _check_types(data: Mapping[str, Any]) -> None:
    """Reject manifests whose fields have the wrong JSON types.

    A hand-edited manifest with ``"feature_names": "abc"`` would otherwise load
    and serve a three-feature model; better a clear error at startup.
    """
    for key in ("name", "version", "artifact", "format", "sha256", "estimator", "task"):
        value = data.get(key)
        allowed = str | int if key == "version" else str  # "version": 2 is a natural thing to write
        if key in data and (isinstance(value, bool) or not isinstance(value, allowed)):
            raise ValueError(f"{key} must be a string")
    sha = data.get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    names = data.get("feature_names")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise ValueError("feature_names must be a non-empty list of strings")
    if data.get("task") not in ("classification", "regression"):
        raise ValueError("task must be 'classification' or 'regression'")
    for key in ("class_names", "classes", "input_schema"):
        if data.get(key) is not None and not isinstance(data[key], list):
            raise ValueError(f"{key} must be a list")
    for key in ("training", "metrics", "versions"):
        if key in data and not isinstance(data[key], dict):
            raise ValueError(f"{key} must be an object")


@dataclass(frozen=True)
class Artifact:
    """A verified, loaded model object and the manifest that vouched for it."""

    obj: Any
    manifest: Manifest
    path: Path


def manifest_path(artifact_path: Path) -> Path:
    """The manifest of ``model.joblib`` is ``model.joblib.json``."""
    return artifact_path.with_name(artifact_path.name + ".json")


def format_for(path: Path) -> str:
    try:
        return SUFFIX_FORMATS[path.suffix.lower()]
    except KeyError:
        raise ArtifactError(
            f"Unknown artifact type {path.suffix!r} for {path.name}; "
            f"use one of {', '.join(sorted(SUFFIX_FORMATS))}."
        ) from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def runtime_versions() -> dict[str, str]:
    """Library versions an artifact depends on, recorded at save time."""
    import joblib
    import numpy
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "joblib": joblib.__version__,
    }


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename into place.

    A crash or a full disk leaves at most a stray temp file, never a truncated
    artifact under the real name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_artifact(path: Path, data: bytes, manifest: Manifest) -> Manifest:
    """Write the model bytes, then the manifest that carries their digest.

    The manifest goes last: until it exists the artifact is not loadable, and a
    stale manifest from an earlier version never matches the new bytes.
    """
    manifest = dataclasses.replace(manifest, artifact=path.name, sha256=sha256_bytes(data))
    atomic_write_bytes(path, data)
    atomic_write_bytes(
        manifest_path(path), json.dumps(manifest.to_dict(), indent=2, sort_keys=True).encode()
    )
    return manifest


def dump_joblib(obj: Any) -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    return buffer.getvalue()


def read_manifest(artifact_path: Path) -> Manifest:
    """Read and check the manifest beside an artifact; a clear error if it is unusable."""
    return parse_manifest(artifact_path, read_manifest_bytes(artifact_path))


def read_manifest_bytes(artifact_path: Path) -> bytes:
    """The manifest's bytes, read once: a signature is checked on exactly what is parsed."""
    path = manifest_path(artifact_path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(
            f"No manifest for {artifact_path.name}: expected {path.name} beside it. "
            "Train with 'iris-service train' or register the file with "
            "'iris-service register PATH --name NAME --trust'."
        ) from None
    except OSError as exc:
        raise ArtifactError(f"Cannot read manifest {path.name}: {exc.strerror or exc}") from None


def parse_manifest(artifact_path: Path, raw: bytes) -> Manifest:
    """Check the manifest bytes of ``artifact_path``; a clear error if they are unusable."""
    path = manifest_path(artifact_path)
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise ArtifactError(f"Manifest {path.name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"Manifest {path.name} must be a JSON object.")
    try:
        return Manifest.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"Manifest {path.name} is malformed: {exc}") from None


@dataclass(frozen=True)
class LoadOptions:
    """What the operator allows a load to accept; loaders read only what they need."""

    pickle_allowed: bool = True
    allow_version_mismatch: bool = False
    skops_trusted_types: tuple[str, ...] = ()


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
    same bytes that are then loaded (no window to swap the file in between).
    With ``trusted_keys`` the manifest must also carry a signature by one of
    them (``signing``): whoever can write the folder can recompute a hash, but
    not sign one, and the signature is checked before the artifact is read.
    """
    options = LoadOptions(pickle_allowed, allow_version_mismatch, tuple(skops_trusted_types))
    path = Path(path)
    if not path.is_file():
        # Messages name the file, not its folder: they reach HTTP clients via reload and readiness.
        raise ArtifactError(f"Model artifact {path.name} does not exist; train one with 'iris-service train'.")
    raw_manifest = read_manifest_bytes(path)
    manifest = parse_manifest(path, raw_manifest)
    if manifest.artifact != path.name:
        raise ArtifactError(
            f"Manifest {manifest_path(path).name} describes {manifest.artifact!r}, not {path.name!r}."
        )
    fmt = manifest.format
    if fmt in PICKLE_FORMATS and not options.pickle_allowed:
        raise ArtifactError(
            f"{path.name} is a {fmt} artifact and PICKLE_ALLOWED is off; "
            "serve an ONNX or skops artifact instead (iris-service export-onnx)."
        )
    loader = LOADERS.get(fmt)
    if loader is None:
        raise ArtifactError(f"No loader for artifact format {fmt!r} ({path.name}).")
    if trusted_keys:  # the signed manifest vouches for the digest before a byte of the artifact is read
        from .signing import verify_signature

        verify_signature(path, raw_manifest, manifest.sha256, trusted_keys)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"Cannot read artifact {path.name}: {exc.strerror or exc}") from None
    digest = sha256_bytes(data)
    if digest != manifest.sha256:
        raise ArtifactError(
            f"SHA-256 mismatch for {path.name}: the manifest says {manifest.sha256}, "
            f"the file is {digest}. Refusing to load it."
        )
    obj = loader(data, manifest, options)
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
    from .onnx_format import load_session

    _require("onnxruntime", "onnx", manifest)  # an optional extra: say so, not ModuleNotFoundError
    return load_session(data, manifest)


def _load_skops(data: bytes, manifest: Manifest, options: LoadOptions) -> Any:
    from .skops_format import load_skops

    _require("skops", "skops", manifest)
    with version_guard(manifest, options.allow_version_mismatch):
        return load_skops(data, manifest, options.skops_trusted_types)


def _require(module: str, extra: str, manifest: Manifest) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ArtifactError(
            f"{manifest.artifact} is a {manifest.format} artifact and {module} is not installed: "
            f"pip install 'iris-service[{extra}]'."
        )


#: Format name -> loader(verified bytes, manifest, options) -> model object.
LOADERS: Mapping[str, Callable[[bytes, Manifest, LoadOptions], Any]] = MappingProxyType({
    "joblib": _load_joblib,
    "pickle": _load_joblib,
    "onnx": _load_onnx,
    "skops": _load_skops,
})


def describe_estimator(
    estimator: Any,
    *,
    name: str,
    version: str,
    fmt: str,
    feature_names: list[str] | None = None,
    class_names: list[str] | None = None,
    input_schema: list[dict[str, Any]] | None = None,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    source: str = "training",
) -> Manifest:
    """Build a manifest from what a fitted estimator knows about itself.

    ``n_features_in_``, ``feature_names_in_`` and ``classes_`` are set by every
    fitted scikit-learn estimator (pipelines delegate them), so a model trained
    anywhere can be described without its training code.
    """
    from sklearn.base import is_classifier, is_regressor

    names = feature_names
    if names is None and hasattr(estimator, "feature_names_in_"):
        names = [str(n) for n in estimator.feature_names_in_]
    if names is None:
        n = getattr(estimator, "n_features_in_", None)
        if n is None:
            raise ArtifactError(
                "Cannot tell how many features the model takes: it has no n_features_in_ "
                "(is it fitted?)."
            )
        names = [f"x{i}" for i in range(int(n))]
    if is_classifier(estimator):
        task = "classification"
        classes = [_json_scalar(c) for c in getattr(estimator, "classes_", [])]
        if not classes:
            raise ArtifactError("The classifier has no classes_ (is it fitted?).")
        class_names = class_names or [str(c) for c in classes]
    elif is_regressor(estimator) or hasattr(estimator, "predict"):
        task = "regression"
        classes = None
        class_names = None
    else:
        raise ArtifactError(f"{type(estimator).__name__} has no predict method.")
    schema = input_schema or [{"name": n, "min": None, "max": None} for n in names]
    return Manifest(
        name=name,
        version=str(version),
        artifact="",
        format=fmt,
        sha256="",
        estimator=f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        task=task,
        feature_names=tuple(names),
        class_names=tuple(class_names) if class_names else None,
        classes=tuple(classes) if classes is not None else None,
        input_schema=tuple(schema),
        training=training or {},
        metrics=metrics or {},
        versions=runtime_versions(),
        created_at=utc_now(),
        source=source,
    )


def _json_scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
