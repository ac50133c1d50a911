"""Artifact files on disk: formats by suffix, digests, atomic writes.

A crash or a full disk never leaves a truncated artifact under its real name,
and the manifest is written last, so a half-written artifact is never loadable.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import ArtifactError
from .manifest import Manifest, manifest_path

PICKLE_FORMATS = frozenset({"joblib", "pickle"})
#: File suffix -> artifact format.
SUFFIX_FORMATS: Mapping[str, str] = MappingProxyType(
    {".joblib": "joblib", ".pkl": "pickle", ".pickle": "pickle", ".onnx": "onnx", ".skops": "skops"}
)


def format_for(path: Path) -> str:
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(SUFFIX_FORMATS))
        raise ArtifactError(f"Unknown artifact type {path.suffix!r} for {path.name}; use one of {known}.")
    return fmt


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


