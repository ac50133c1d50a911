"""``from_artifact``: a verified artifact in the runtime its format needs, on its fastest exact path."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from ..artifacts import Artifact, Manifest
from .linear import accelerate
from .prediction import Model
from .sklearn import SklearnModel


def from_artifact(artifact: Artifact) -> Model:
    """Wrap a loaded artifact in its runtime; logistic regressions take the checked numpy path."""
    factory = RUNTIMES.get(artifact.manifest.format, SklearnModel)
    return accelerate(factory(artifact.obj, artifact.manifest))


def _onnx_model(session: Any, manifest: Manifest) -> Model:
    from .onnx import OnnxModel  # onnxruntime only for ONNX artifacts

    return OnnxModel(session, manifest)


#: Artifact format -> runtime factory; formats not listed are scikit-learn objects.
RUNTIMES: Mapping[str, Callable[[Any, Manifest], Model]] = MappingProxyType({"onnx": _onnx_model})
