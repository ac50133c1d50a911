"""Files on disk: manifests, digests, atomic writes, and one verified loader per format.

The bottom layer: it knows nothing of runtimes, serving or HTTP.
"""
from .files import (
    PICKLE_FORMATS,
    SUFFIX_FORMATS,
    atomic_write_bytes,
    dump_joblib,
    format_for,
    sha256_bytes,
    write_artifact,
)
from .loading import LOADERS, Artifact, LoadOptions, load_verified
from .manifest import Manifest, describe_estimator, manifest_path, read_manifest, runtime_versions, utc_now

__all__ = [
    "LOADERS",
    "PICKLE_FORMATS",
    "SUFFIX_FORMATS",
    "Artifact",
    "LoadOptions",
    "Manifest",
    "atomic_write_bytes",
    "describe_estimator",
    "dump_joblib",
    "format_for",
    "load_verified",
    "manifest_path",
    "read_manifest",
    "runtime_versions",
    "sha256_bytes",
    "utc_now",
    "write_artifact",
]
