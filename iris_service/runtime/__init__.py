"""Runtimes: a verified model object behind one ``predict(x) -> Prediction`` call.

scikit-learn, the exact numpy path for logistic regression, ONNX; the
equivalence check every fast path must pass; the micro-batcher. No HTTP here.
"""
from .factory import from_artifact
from .prediction import Model, Prediction
from .sklearn import ManifestModel, SklearnModel

__all__ = ["ManifestModel", "Model", "Prediction", "SklearnModel", "from_artifact"]
