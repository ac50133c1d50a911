"""The manifest beside every artifact: what we know about a model without loading it.

The manifest of ``model.joblib`` is ``model.joblib.json``. It names the file, its
SHA-256, the estimator, features with their training ranges, classes and the
library versions it was saved with; ``read_manifest`` refuses a malformed one
with a message naming what is wrong, before anything is loaded.
"""
from __future__ import annotations

import dataclasses
import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import ArtifactError

MANIFEST_FORMAT = 1
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
    #: Feature means and background rows for explanations, with their SHA-256 (``background.py``).
    explain: dict[str, Any] = field(default_factory=dict)
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
        data.pop("explain", None)  # training rows are not for clients
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
    for key in ("training", "metrics", "versions", "explain"):
        if key in data and not isinstance(data[key], dict):
            raise ValueError(f"{key} must be an object")


def manifest_path(artifact_path: Path) -> Path:
    """The manifest of ``model.joblib`` is ``model.joblib.json``."""
    return artifact_path.with_name(artifact_path.name + ".json")


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


def read_manifest(artifact_path: Path) -> Manifest:
    """Read and check the manifest beside an artifact; a clear error if it is unusable."""
    return parse_manifest(artifact_path, read_manifest_bytes(artifact_path))


def read_described(path: Path) -> tuple[bytes, Manifest]:
    """An existing artifact's manifest bytes and manifest, which must describe that very file.

    Messages name the file, not its folder: they reach HTTP clients via reload and readiness.
    """
    if not path.is_file():
        raise ArtifactError(f"Model artifact {path.name} does not exist; train one with 'iris-service train'.")
    raw = read_manifest_bytes(path)
    manifest = parse_manifest(path, raw)
    if manifest.artifact != path.name:
        raise ArtifactError(f"Manifest {manifest_path(path).name} describes {manifest.artifact!r}, not {path.name!r}.")
    return raw, manifest


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
