"""The MLflow scoring protocol: pandas-style frames and CSV in, ``{"predictions": [...]}`` out."""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BadRequest
from ..runtime import Model, Prediction
from . import Decoded, Limits
from .rows import NamedRows

#: The status of this protocol's input errors (its specification says 400).
INPUT_ERROR = BadRequest


def decode(body: dict[str, Any], model: Model, limits: Limits) -> Decoded:
    return Decoded(_matrix(body, model))


def _matrix(body: dict[str, Any], model: Model) -> npt.NDArray[np.float64]:
    if "dataframe_split" in body:
        split = body["dataframe_split"]
        x = split["data"]
        if "columns" not in split:
            return _check_width(x, model)
        order = [split["columns"].index(name) for name in _match_columns(split["columns"], model)]
        return x[:, order]
    rows = body.get("dataframe_records", body.get("instances", body.get("inputs")))
    if isinstance(rows, NamedRows):
        return _named_matrix(rows, model)
    return _check_width(rows, model)


def encode(prediction: Prediction, model: Model, decoded: Decoded) -> dict[str, Any]:
    """What MLflow's pyfunc answers for a scikit-learn model: ``estimator.predict(X)``.

    For a classifier that is the class *value* (an element of ``classes_``,
    recorded in the manifest), not the index the V1/V2 protocols answer.
    """
    if prediction.classes is None:
        assert prediction.values is not None
        return {"predictions": prediction.values.tolist()}
    classes = model.manifest.classes
    indices = prediction.classes.tolist()
    if not classes:
        return {"predictions": indices}
    return {"predictions": [classes[i] for i in indices]}


def read_csv(data: bytes) -> dict[str, Any]:
    """A CSV body with a header row, as the ``dataframe_split`` it stands for.

    The standard library's ``csv`` keeps pandas out of the server; values must
    be finite numbers, and the first bad cell is named by row and column.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("The CSV body is not UTF-8 text.") from None
    lines = [row for row in csv.reader(io.StringIO(text)) if row]
    if not lines:
        raise BadRequest("The CSV body is empty; send a header row and at least one row of values.")
    header = [name.strip() for name in lines[0]]
    if len(lines) < 2:
        raise BadRequest("The CSV body has a header row but no rows of values.")
    rows = []
    for number, line in enumerate(lines[1:], start=1):
        if len(line) != len(header):
            raise BadRequest(f"CSV row {number} has {len(line)} values; the header names {len(header)} columns.")
        rows.append([_number(cell, number, column) for cell, column in zip(line, header, strict=False)])
    return {"dataframe_split": {"columns": header, "data": rows}}


def _number(cell: str, row: int, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise BadRequest(f"CSV row {row}, column {column!r}: {cell!r} is not a number.") from None
    if not math.isfinite(value):
        raise BadRequest(f"CSV row {row}, column {column!r}: {cell!r} is not a finite number.")
    return value


def _match_columns(columns: Sequence[str], model: Model, row: int | None = None) -> tuple[str, ...]:
    """The model's feature names, after checking ``columns`` holds each exactly once."""
    names = model.feature_names
    seen = set()
    for column in columns:
        if column in seen:
            raise BadRequest(f"Column {column!r} is given twice.")
        seen.add(column)
    missing = [n for n in names if n not in seen]
    unknown = [c for c in columns if c not in names]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing column(s): {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s): {', '.join(unknown)}")
        message = "; ".join(parts)
        message = f"Row {row}: {message}" if row is not None else message[0].upper() + message[1:]
        raise BadRequest(f"{message}. Expected: {', '.join(names)}.")
    return names


def _named_matrix(rows: NamedRows, model: Model) -> npt.NDArray[np.float64]:
    names = model.feature_names
    wanted = set(names)
    for i, row in enumerate(rows.rows):
        if row.keys() != wanted:
            _match_columns(list(row), model, row=i)
    return np.array([[row[n] for n in names] for row in rows.rows], dtype=np.float64)


def _check_width(x: npt.NDArray[np.float64], model: Model) -> npt.NDArray[np.float64]:
    if x.shape[1] != model.n_features:
        raise BadRequest(
            f"Expected {model.n_features} values per row ({', '.join(model.feature_names)}), got {x.shape[1]}."
        )
    return x
