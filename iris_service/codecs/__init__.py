"""Protocol codecs: ``decode(body, model) -> Decoded`` and ``encode(prediction, model, decoded)``.

Each protocol (native ``/predict``, V1, V2, MLflow) differs only in how it
reads rows and writes answers; ``inference.run`` does the rest for all.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInput
from ..runtime import Model, Prediction
from ..schemas.fields import NamedRows, Rows


@dataclass(frozen=True)
class Decoded:
    """A request as the model sees it, plus what the codec needs to answer it."""

    x: npt.NDArray[np.float64]
    single: bool = False
    context: Mapping[str, Any] = field(default_factory=dict)


class Codec(Protocol):
    def decode(self, body: Any, model: Model) -> Decoded: ...

    def encode(self, prediction: Prediction, model: Model, decoded: Decoded) -> Any: ...


def to_matrix(rows: Rows, model: Model, location: tuple[str, ...], single: bool = False) -> npt.NDArray[np.float64]:
    """Order rows by the model's features and check their width.

    ``location`` is where errors are reported (``("json", "instances")``), so
    every protocol names the field and row the way its client sent them.
    """
    if isinstance(rows, NamedRows):
        return _named_to_matrix(rows, model, location, single)
    if rows.shape[1] != model.n_features:
        raise _invalid(
            location,
            f"Expected {model.n_features} features ({', '.join(model.feature_names)}), "
            f"got {rows.shape[1]}.",
        )
    return rows


def _named_to_matrix(rows: NamedRows, model: Model, location: tuple[str, ...], single: bool) -> npt.NDArray[np.float64]:
    names = model.feature_names
    wanted = set(names)
    for i, row in enumerate(rows.rows):
        if row.keys() != wanted:
            missing = [n for n in names if n not in row]
            unknown = [k for k in row if k not in wanted]
            parts = []
            if missing:
                parts.append(f"missing feature(s): {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown feature(s): {', '.join(unknown)}")
            message = "; ".join(parts).capitalize() + f". Expected: {', '.join(names)}."
            raise _invalid(location if single else (*location, str(i)), message)
    return np.array([[row[n] for n in names] for row in rows.rows], dtype=np.float64)


def _invalid(location: tuple[str, ...], message: str) -> InvalidInput:
    errors: Any = [message]
    for key in reversed(location):
        errors = {key: errors}
    return InvalidInput(message, errors=errors)
