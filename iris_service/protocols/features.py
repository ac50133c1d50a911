"""Rows as the model sees them: ordered by its feature names, as wide as it takes."""
from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInput, IrisServiceError
from ..runtime import Model
from .rows import NamedRows, Rows


def to_matrix(
    rows: Rows,
    model: Model,
    location: tuple[str, ...],
    single: bool = False,
    error: type[IrisServiceError] = InvalidInput,
) -> npt.NDArray[np.float64]:
    """Order rows by the model's features and check their width.

    ``location`` is where errors are reported (``("json", "instances")``), so
    every protocol names the field and row the way its client sent them, as its
    own ``error`` (``INPUT_ERROR``).
    """
    if isinstance(rows, NamedRows):
        return _named_to_matrix(rows, model, location, single, error)
    if rows.shape[1] != model.n_features:
        raise _invalid(
            error,
            location,
            f"Expected {model.n_features} features ({', '.join(model.feature_names)}), "
            f"got {rows.shape[1]}.",
        )
    return rows


def _named_to_matrix(
    rows: NamedRows, model: Model, location: tuple[str, ...], single: bool, error: type[IrisServiceError]
) -> npt.NDArray[np.float64]:
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
            raise _invalid(error, location if single else (*location, str(i)), message)
    return np.array([[row[n] for n in names] for row in rows.rows], dtype=np.float64)


def _invalid(error: type[IrisServiceError], location: tuple[str, ...], message: str) -> IrisServiceError:
    errors: Any = [message]
    for key in reversed(location):
        errors = {key: errors}
    return error(message, errors=errors)
