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
#: The widest CSV or Parquet table read: a model with more features than this cannot be scored by file.
MAX_COLUMNS = 1024
#: Longest client-given column name quoted back in a message.
_LONGEST_NAME = 64
#: MLflow's ``error_code`` for our statuses (its ``ERROR_CODE_TO_HTTP_STATUS`` read backwards);
#: statuses it has no code for are BAD_REQUEST (4xx) or INTERNAL_ERROR (5xx).
ERROR_CODES = {
    400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "ENDPOINT_NOT_FOUND",
    408: "DEADLINE_EXCEEDED", 409: "RESOURCE_CONFLICT", 429: "REQUEST_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED", 503: "TEMPORARILY_UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}


def error_code(status: int) -> str:
    """The ``error_code`` MLflow's scoring server would send with ``status``."""
    return ERROR_CODES.get(status) or ("BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")


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


def read_csv(data: bytes, limits: Limits | None = None) -> dict[str, Any]:
    """A CSV body with a header row, as the ``dataframe_split`` it stands for.

    The standard library's ``csv`` keeps pandas out of the server; values must
    be finite numbers, and the first bad cell is named by row and column.
    Reading stops at the row limit and the header at ``MAX_COLUMNS``, so a body
    of tiny rows costs no more than the rows a request may hold.
    """
    limits = limits or Limits()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("The CSV body is not UTF-8 text.") from None
    lines = (row for row in csv.reader(io.StringIO(text)) if row)
    first = next(lines, None)
    if first is None:
        raise BadRequest("The CSV body is empty; send a header row and at least one row of values.")
    check_columns(len(first), "The CSV header")
    header = [name.strip() for name in first]
    rows = []
    for number, line in enumerate(lines, start=1):
        if number > limits.max_rows:
            raise BadRequest(f"At most {limits.max_rows} rows per request; the CSV body holds more.")
        if len(line) != len(header):
            raise BadRequest(f"CSV row {number} has {len(line)} values; the header names {len(header)} columns.")
        rows.append([_number(cell, number, column) for cell, column in zip(line, header, strict=False)])
    if not rows:
        raise BadRequest("The CSV body has a header row but no rows of values.")
    return {"dataframe_split": {"columns": header, "data": rows}}


def check_columns(count: int, what: str) -> None:
    """Refuse a table wider than ``MAX_COLUMNS`` before reading its cells."""
    if count > MAX_COLUMNS:
        raise BadRequest(f"{what} names {count} columns; at most {MAX_COLUMNS}.")


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
            # Quoted: a client's names may be empty or hold spaces; long ones are cut.
            parts.append(f"unknown column(s): {', '.join(_quoted(c) for c in unknown)}")
        message = "; ".join(parts)
        message = f"Row {row}: {message}" if row is not None else message[0].upper() + message[1:]
        hint = ""
        if any(not c.strip() or c.startswith("Unnamed: ") for c in unknown):
            hint = (" A column without a name looks like the DataFrame's index: leave it out"
                    " (DataFrame.to_csv(index=False)) or send it as dataframe_split's 'index'.")
        raise BadRequest(f"{message}. Expected: {', '.join(names)}.{hint}")
    return names


def _quoted(name: str) -> str:
    return repr(name if len(name) <= _LONGEST_NAME else name[:_LONGEST_NAME] + "...")


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
