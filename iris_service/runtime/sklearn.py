"""The model runtime: a verified estimator behind one ``predict(x)`` call.

It knows no HTTP and no protocol: codecs turn requests into a float64 array and
a ``Prediction`` back into their own answer.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from .artifacts import Artifact, Manifest


@dataclass(frozen=True)
class Prediction:
    """One model call's answer, one entry per input row.

    ``classes`` are indices into the model's ``class_names`` (classifiers);
    ``probabilities`` has one column per class when the model gives them;
    ``values`` holds a regressor's outputs.
    """

    classes: npt.NDArray[np.int64] | None = None
    probabilities: npt.NDArray[np.float64] | None = None
    values: npt.NDArray[np.float64] | None = None

    def __len__(self) -> int:
        for part in (self.classes, self.values, self.probabilities):
            if part is not None:
                return int(part.shape[0])
        return 0

    def slice(self, start: int, stop: int) -> Prediction:
        """The rows ``start:stop``; used to hand a shared batch back to callers."""
        return Prediction(
            *(None if part is None else part[start:stop] for part in (self.classes, self.probabilities, self.values))
        )


class Model(Protocol):
    """What codecs, blueprints and the batcher may rely on."""

    name: str
    version: str
    manifest: Manifest
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...] | None
    is_classifier: bool
    has_probabilities: bool

    @property
    def n_features(self) -> int: ...

    def predict(self, x: npt.NDArray[np.float64]) -> Prediction: ...


class ManifestModel:
    """What every runtime takes from the manifest, and how raw outputs become a ``Prediction``.

    scikit-learn and ONNX runtimes differ only in the call that computes the
    outputs; the mapping to class indices and values is shared here so the two
    can never answer differently for the same outputs.
    """

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.name = manifest.name
        self.version = manifest.version
        self.feature_names = tuple(manifest.feature_names)
        self.class_names = tuple(manifest.class_names) if manifest.class_names else None
        self.is_classifier = manifest.task == "classification"
        self.has_probabilities = False
        self._classes = np.asarray(manifest.classes or ())

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def _from_probabilities(self, proba: Any) -> Prediction:
        proba = np.asarray(proba, dtype=np.float64)
        return Prediction(classes=proba.argmax(axis=1), probabilities=proba)

    def _from_outputs(self, raw: Any) -> Prediction:
        """Labels of a classifier without probabilities, or a regressor's values."""
        raw = np.asarray(raw)
        if self.is_classifier:
            return Prediction(classes=np.searchsorted(self._classes, raw).astype(np.int64))
        values = raw.astype(np.float64)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        return Prediction(values=values)


class SklearnModel(ManifestModel):
    """A scikit-learn estimator (or pipeline) served through ``predict``.

    One estimator call per request: classifiers with ``predict_proba`` take the
    class as the argmax of the probabilities, so a request never pays for both
    ``predict`` and ``predict_proba``.
    """

    def __init__(self, estimator: Any, manifest: Manifest) -> None:
        super().__init__(manifest)
        self.estimator = estimator
        self.has_probabilities = self.is_classifier and hasattr(estimator, "predict_proba")
        self._classes = np.asarray(getattr(estimator, "classes_", self._classes))
        _forget_feature_names(estimator)

    def predict(self, x: npt.NDArray[np.float64]) -> Prediction:
        import sklearn

        # Codecs already checked shape and finiteness; scikit-learn need not again.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            if self.has_probabilities:
                return self._from_probabilities(self.estimator.predict_proba(x))
            return self._from_outputs(self.estimator.predict(x))


def from_artifact(artifact: Artifact) -> Model:
    """Wrap a loaded artifact in the runtime its format needs."""
    factory = RUNTIMES.get(artifact.manifest.format, SklearnModel)
    from .linear import accelerate  # exact numpy path for logistic regression, checked at load

    return accelerate(factory(artifact.obj, artifact.manifest))


def _onnx_model(session: Any, manifest: Manifest) -> Model:
    from .onnx_format import OnnxModel  # onnxruntime only for ONNX artifacts

    return OnnxModel(session, manifest)


#: Artifact format -> runtime factory; formats not listed are scikit-learn objects.
RUNTIMES: Mapping[str, Callable[[Any, Manifest], Model]] = MappingProxyType({"onnx": _onnx_model})


def _forget_feature_names(estimator: Any) -> None:
    """Drop ``feature_names_in_`` so numpy input does not warn on every call.

    Codecs order the columns by the manifest's feature names, which were taken
    from ``feature_names_in_`` at registration, so the check is already done.
    """
    seen: set[int] = set()
    stack = [estimator]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or not hasattr(obj, "get_params"):
            continue
        seen.add(id(obj))
        vars(obj).pop("feature_names_in_", None)
        for attr in ("steps", "transformers_", "estimators_", "named_steps"):
            value = getattr(obj, attr, None)
            if isinstance(value, dict):
                value = list(value.values())
            if isinstance(value, list | tuple):
                for item in value:
                    stack.extend(item if isinstance(item, tuple) else (item,))
        for key in ("estimator", "base_estimator", "final_estimator_", "estimator_"):
            inner = vars(obj).get(key)
            if inner is not None:
                stack.append(inner)
