"""What every explainer answers: ``Explanation``, and the ``Explainer`` protocol.

Apart from ``explain.py`` so that the linear and tree explainers share it
without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Explanation:
    """Contributions for ``n`` rows, ``k`` classes and ``f`` features.

    ``baseline[j] + contributions[i, j].sum() == scores[i, j]``: ``scores`` is
    the model output being explained (``output``: the decision function, or the
    probabilities of a forest), one column per class. A binary model's one
    decision score ``d`` is class 1's score and ``-d`` class 0's.
    """

    scores: npt.NDArray[np.float64]  # (n, k)
    baseline: npt.NDArray[np.float64]  # (k,)
    contributions: npt.NDArray[np.float64]  # (n, k, f)
    method: str
    output: str


class Explainer(Protocol):
    method: str
    output: str
    #: The most rows one request may explain (None: the data plane's row limit alone).
    max_rows: int | None

    def explain(self, x: npt.NDArray[np.float64]) -> Explanation: ...
