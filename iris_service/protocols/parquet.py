"""Parquet bodies (``application/vnd.apache.parquet``, which MLflow 3's scoring server reads), bounded first.

A Parquet body is compressed: a few kilobytes can claim millions of cells. So
everything is checked on the file's footer before a page is decompressed: the
row count against the row limit, the column count against ``MAX_COLUMNS``, a
number type (no strings, no nested lists) for every column, and the unpacked
size the footer declares. pandas' index columns (``df.to_parquet()`` stores a
non-default index as ``__index_level_0__``) are left out, as ``pd.read_parquet``
makes them the index. pyarrow comes with the ``files`` extra; without it
Parquet bodies are refused with 415 naming the extra.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BadRequest, UnsupportedMediaType
from ..extras import install_hint
from . import Limits
from .mlflow import MAX_COLUMNS, check_columns

MEDIA_TYPE = "application/vnd.apache.parquet"
INSTALL_HINT = install_hint("files")
#: Declared unpacked bytes a cell may take (8 for the number, the rest for levels, headers,
#: statistics), plus a fixed allowance for the footer: far above an honest file's size.
_BYTES_PER_CELL = 16
_FIXED_ALLOWANCE = 1 << 20


def read_parquet(data: bytes, limits: Limits | None = None) -> dict[str, Any]:
    """A Parquet body as the ``dataframe_split`` it stands for; 400 naming what is wrong, 415 without pyarrow."""
    limits = limits or Limits()
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UnsupportedMediaType(
            f"Parquet bodies need pyarrow on the server, from the 'files' extra: {INSTALL_HINT}; or send "
            "application/json or text/csv."
        ) from None
    if not data:
        raise BadRequest("The Parquet body is empty; send a file written by DataFrame.to_parquet().")
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise BadRequest(f"The body is not a readable Parquet file: {_short(exc)}") from None
    metadata = parquet.metadata
    check_columns(metadata.num_columns, "The Parquet file")
    index = _index_columns(schema)
    names = [name for name in schema.names if name not in index]
    rows = metadata.num_rows
    if rows > limits.max_rows:
        raise BadRequest(f"At most {limits.max_rows} rows per request; the Parquet file holds {rows}.")
    if rows == 0 or not names:
        raise BadRequest("The Parquet file holds no rows of values; send at least one.")
    for field in schema:
        if field.name not in index and not (pa.types.is_integer(field.type) or pa.types.is_floating(field.type)):
            raise BadRequest(f"Parquet column {_shown(field.name)} holds {field.type}; every column must hold numbers.")
    unpacked = sum(metadata.row_group(g).column(c).total_uncompressed_size
                   for g in range(metadata.num_row_groups) for c in range(metadata.num_columns))
    allowed = _BYTES_PER_CELL * rows * metadata.num_columns + _FIXED_ALLOWANCE
    if unpacked > allowed:
        raise BadRequest(f"The Parquet file unpacks to {unpacked} bytes for {rows} rows; at most {allowed}.")
    try:
        table = parquet.read(columns=names, use_threads=False)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise BadRequest(f"The Parquet file could not be read: {_short(exc)}") from None
    columns = [_finite(table.column(i), name) for i, name in enumerate(names)]
    return {"dataframe_split": {"columns": names, "data": np.column_stack(columns).tolist()}}


def _index_columns(schema: Any) -> set[str]:
    """The columns pandas wrote for the DataFrame's index, from its metadata (or its naming rule)."""
    names = {name for name in schema.names if name.startswith("__index_level_")}
    raw = (schema.metadata or {}).get(b"pandas")
    if raw:
        try:
            described = json.loads(raw).get("index_columns", [])
        except (ValueError, AttributeError):
            described = []
        names.update(item for item in described if isinstance(item, str))
    return names


def _finite(column: Any, name: str) -> npt.NDArray[np.float64]:
    """One column as float64; a missing or non-finite cell is refused by row and column."""
    values = np.asarray(column.to_numpy(), dtype=np.float64)
    missing = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    bad = missing | ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        if missing[row] or np.isnan(values[row]):
            raise BadRequest(f"Missing value at row {row}, column {_shown(name)}: the model needs a number in every cell.")
        raise BadRequest(f"Row {row}, column {_shown(name)}: {values[row]} is not a finite number.")
    return values


def _shown(name: str) -> str:
    return repr(name if len(name) <= 64 else name[:64] + "...")


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:200] + "..."


__all__ = ["INSTALL_HINT", "MAX_COLUMNS", "MEDIA_TYPE", "read_parquet"]
