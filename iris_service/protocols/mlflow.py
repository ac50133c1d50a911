"""The MLflow scoring protocol: pandas-style frames and CSV in, ``{"predictions": [...]}`` out."""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BadRequest
from ..runtime import Model, Prediction
from . import Decoded, Limits
from .bounds import MAX_FIELD_LENGTH, MIN_COLUMNS, NAMES_SHOWN, SHOWN, clip, misfit, some
from .bounds import max_columns as columns_for
from .rows import NamedRows

#: The status of this protocol's input errors (its specification says 400).
INPUT_ERROR = BadRequest
#: The widest Parquet table read: a model with more features than this cannot be scored by file.
MAX_COLUMNS = 1024
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


def check_columns(count: int, what: str) -> None:
    """Refuse a table wider than ``MAX_COLUMNS`` before reading its cells."""
    if count > MAX_COLUMNS:
        raise BadRequest(f"{what} names {count} columns; at most {MAX_COLUMNS}.")


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


def read_csv(data: bytes, max_rows: int | None = None, max_columns: int | None = None) -> dict[str, Any]:
    """A CSV body with a header row, as the ``dataframe_split`` it stands for.

    The standard library's ``csv`` keeps pandas out of the server; values must
    be finite numbers, and the first bad cell is named by row and column.
    The body is decoded and split a line at a time, each line measured before
    ``csv`` parses it, so ``max_rows`` rows of at most ``max_columns`` fields of
    ``MAX_FIELD_LENGTH`` characters bound the work whatever the body holds: an
    8-million-line body is refused after reading ``max_rows`` of its lines.
    """
    columns = max_columns if max_columns is not None else MIN_COLUMNS  # what every model accepts
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline=None)
    reader = csv.reader(_bounded_lines(text, max_rows, columns * (MAX_FIELD_LENGTH + 1)))
    lines: list[list[str]] = []
    try:
        for line in reader:
            if not line:
                continue
            _check_fields(line, reader.line_num, columns)
            lines.append(line)
            if max_rows is not None and len(lines) > max_rows + 1:
                raise BadRequest(f"At most {max_rows} rows per request; the CSV body has more.")
    except UnicodeDecodeError:
        raise BadRequest("The CSV body is not UTF-8 text.") from None
    except csv.Error as exc:
        raise BadRequest(f"The CSV body cannot be read at line {reader.line_num}: {clip(str(exc))}.") from None
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


def _bounded_lines(text: Iterable[str], max_rows: int | None, max_length: int) -> Iterator[str]:
    """The body's lines, each refused past ``max_length`` characters, and refused past twice the rows.

    Blank lines are skipped by the reader but still cost a step each, so they
    count too: a header, ``max_rows`` rows, and as many blank lines at most.
    """
    max_lines = 2 * (max_rows + 1) if max_rows is not None else None
    for number, line in enumerate(text, start=1):
        if len(line) > max_length:
            raise BadRequest(f"CSV line {number} is longer than {max_length} characters.")
        if max_lines is not None and number > max_lines:
            raise BadRequest(f"At most {max_rows} rows per request; the CSV body has more than {max_lines} lines.")
        yield line


def _check_fields(line: list[str], number: int, max_columns: int) -> None:
    if len(line) > max_columns:
        raise BadRequest(f"CSV line {number} has {len(line)} fields; at most {max_columns}.")
    longest = max(map(len, line))
    if longest > MAX_FIELD_LENGTH:
        raise BadRequest(f"CSV line {number} has a field of {longest} characters; at most {MAX_FIELD_LENGTH}.")


def _number(cell: str, row: int, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise BadRequest(f"CSV row {row}, column {clip(column)!r}: {clip(cell)!r} is not a number.") from None
    if not math.isfinite(value):
        raise BadRequest(f"CSV row {row}, column {clip(column)!r}: {clip(cell)!r} is not a finite number.")
    return value


def _match_columns(columns: Sequence[str], model: Model, row: int | None = None) -> tuple[str, ...]:
    """The model's feature names, after checking ``columns`` holds each exactly once.

    Columns past ``bounds.max_columns`` are counted, not read: a client naming
    two million columns gets one line, not a message listing them.
    """
    names = model.feature_names
    expected = f"Expected: {some(names, NAMES_SHOWN)}."
    limit = columns_for(model.n_features)
    if len(columns) > limit:
        where = f"Row {row} names" if row is not None else "The request names"
        raise BadRequest(f"{where} {len(columns)} columns; at most {limit}. {expected}")
    seen = set()
    for column in columns:
        if column in seen:
            raise BadRequest(f"Column {clip(column)!r} is given twice.")
        seen.add(column)
    missing = [n for n in names if n not in seen]
    wanted = set(names)
    unknown = [c for c in columns if c not in wanted]
    if missing or unknown:
        # Unknown names quoted: a client's names may be empty or hold spaces; long ones are clipped.
        message = misfit(missing, unknown, "column", quote_unknown=True)
        if row is not None:
            message = f"Row {row}: {message[:1].lower()}{message[1:]}"
        hint = ""
        if any(not c.strip() or c.startswith("Unnamed: ") for c in unknown[:SHOWN]):
            hint = (" A column without a name looks like the DataFrame's index: leave it out"
                    " (DataFrame.to_csv(index=False)) or send it as dataframe_split's 'index'.")
        raise BadRequest(f"{message}. {expected}{hint}")
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
            f"Expected {model.n_features} values per row ({some(model.feature_names, NAMES_SHOWN)}), "
            f"got {x.shape[1]}."
        )
    return x
