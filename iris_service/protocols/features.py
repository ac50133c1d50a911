"""Rows as the model sees them: ordered by its feature names, as wide as it takes."""
from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInput, IrisServiceError
from ..runtime import Model
from .bounds import NAMES_SHOWN, max_columns, misfit, some
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
            f"Expected {model.n_features} features ({some(model.feature_names, NAMES_SHOWN)}), "
            f"got {rows.shape[1]}.",
        )
    return rows


def _named_to_matrix(
    rows: NamedRows, model: Model, location: tuple[str, ...], single: bool, error: type[IrisServiceError]
) -> npt.NDArray[np.float64]:
    names = model.feature_names
    wanted = set(names)
    limit = max_columns(model.n_features)
    for i, row in enumerate(rows.rows):
        if row.keys() != wanted:
            where = location if single else (*location, str(i))
            expected = f"Expected: {some(names, NAMES_SHOWN)}."
            if len(row) > limit:  # counted, not named: no key of a huge row is read
                raise _invalid(error, where, f"Names {len(row)} features; at most {limit} per row. {expected}")
            missing = [n for n in names if n not in row]
            unknown = [k for k in row if k not in wanted]
            raise _invalid(error, where, f"{misfit(missing, unknown, 'feature')}. {expected}")
    return np.array([[row[n] for n in names] for row in rows.rows], dtype=np.float64)


def _invalid(error: type[IrisServiceError], location: tuple[str, ...], message: str) -> IrisServiceError:
    errors: Any = [message]
    for key in reversed(location):
        errors = {key: errors}
    return error(message, errors=errors)
