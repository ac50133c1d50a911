"""What every runtime answers and what every caller may rely on: ``Model.predict(x) -> Prediction``.

It knows no HTTP and no protocol: protocols turn requests into a float64 array
and a ``Prediction`` back into their own answer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ..artifacts import Manifest


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
