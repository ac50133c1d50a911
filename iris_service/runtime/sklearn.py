"""scikit-learn estimators behind ``predict``, and what every runtime takes from the manifest."""
from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ..artifacts import Manifest
from .prediction import Prediction


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

        # Protocols already checked shape and finiteness; scikit-learn need not again. Huge finite
        # inputs may overflow inside it: the data plane refuses a non-finite answer, so no warning here.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True), np.errstate(all="ignore"):
            if self.has_probabilities:
                return self._from_probabilities(self.estimator.predict_proba(x))
            return self._from_outputs(self.estimator.predict(x))


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
