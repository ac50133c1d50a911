"""JSON feature rows turned into a float64 array in bulk, naming the row and column of the first bad value.

A validator per number costs microseconds per value; these check types with
one pass over the rows and let numpy convert and test finiteness. They raise
``InvalidRows`` with field-level messages, which each transport reports in its
own shape (the REST schemas as marshmallow errors).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInput
from .bounds import clip

_NUMBER_TYPES = frozenset({int, float})
_LIST_ONLY = {list}
#: Up to this many values, rows are checked in a Python loop rather than with numpy.
_SMALL = 64


class InvalidRows(InvalidInput):
    """Rows that are not numbers: ``messages`` nests the complaint under its row (and column)."""

    def __init__(self, messages: Any) -> None:
        super().__init__("The rows are not valid; see errors.", errors={"rows": messages})
        self.messages = messages


@dataclass(frozen=True)
class NamedRows:
    """Rows given as ``{feature name: value}`` objects; ordered later by the model."""

    rows: tuple[Mapping[str, float], ...]

    def __len__(self) -> int:
        return len(self.rows)


Rows = npt.NDArray[np.float64] | NamedRows


def positional_rows(rows: list[Any], single: bool = False, max_width: int | None = None) -> npt.NDArray[np.float64]:
    """Check rows of numbers and convert them to one (n, width) float64 array.

    ``max_width`` bounds the first row before any value is read; every other row
    must be as wide, so the values read are at most ``len(rows) * max_width``.
    """
    first = rows[0]
    if not isinstance(first, list):
        raise _row_error(0, "Must be a list of numbers.", single)
    width = len(first)
    if width == 0:
        raise _row_error(0, "Must contain at least one number.", single)
    if max_width is not None and width > max_width:
        raise _row_error(0, f"Has {width} values; at most {max_width} per row.", single)
    # Whole-batch checks run in C (map, set); the per-row loop only names the bad row.
    if set(map(type, rows)) != _LIST_ONLY or set(map(len, rows)) != {width}:
        _raise_first_bad_row(rows, width, single)
    count = len(rows) * width
    if count <= _SMALL:
        # A few values: a Python loop costs less than numpy's isfinite and all.
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                if type(value) not in _NUMBER_TYPES or not _finite(value):
                    raise _cell_error(i, j, _describe_bad(value), single)
        return np.array(rows, dtype=np.float64)
    # One walk of the nested lists: the type check and the copy then read a flat list.
    values = list(chain.from_iterable(rows))
    if not set(map(type, values)) <= _NUMBER_TYPES:
        _raise_first_bad(rows, single)
    try:
        # fromiter over the checked numbers: about twice as fast as np.array on nested lists.
        array = np.fromiter(values, dtype=np.float64, count=count).reshape(len(rows), width)
    except (OverflowError, ValueError):
        _raise_first_bad(rows, single)
    if not np.isfinite(array).all():
        i, j = (int(k) for k in np.argwhere(~np.isfinite(array))[0])
        raise _cell_error(i, j, "Must be a finite number.", single)
    return array


def _raise_first_bad_row(rows: list[Any], width: int, single: bool) -> None:
    for i, row in enumerate(rows):
        if type(row) is not list:
            raise _row_error(i, "All rows must be lists of numbers (or all objects).", single)
        if len(row) != width:
            raise _row_error(i, f"Expected {width} values like the first row, got {len(row)}.", single)


def named_rows(rows: list[Any], single: bool = False, max_width: int | None = None) -> NamedRows:
    """Check rows of ``{name: number}``; the model decides which names it needs.

    ``max_width`` bounds each row's keys before its values are read.
    """
    for i, row in enumerate(rows):
        if type(row) is not dict:
            raise _row_error(i, "All rows must be objects of feature name to number (or all lists).", single)
        if not row:
            raise _row_error(i, "Must name at least one feature.", single)
        if max_width is not None and len(row) > max_width:
            raise _row_error(i, f"Names {len(row)} features; at most {max_width} per row.", single)
        for key, value in row.items():
            if type(value) not in _NUMBER_TYPES or not _finite(value):
                raise _cell_error(i, key, _describe_bad(value), single)
    return NamedRows(tuple(rows))


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _raise_first_bad(rows: list[list[Any]], single: bool) -> None:
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if type(value) not in _NUMBER_TYPES or not _finite(value):
                raise _cell_error(i, j, _describe_bad(value), single)
    raise InvalidRows("Values must be finite numbers.")


def _describe_bad(value: Any) -> str:
    if value is None:
        return "Must be a number, not null."
    if isinstance(value, bool):
        return "Must be a number, not a boolean."
    if isinstance(value, str):
        return "Must be a number, not a string."
    if isinstance(value, list | dict):
        return "Must be a number, not a nested list or object."
    return "Must be a finite number."


def _row_error(i: int, message: str, single: bool) -> InvalidRows:
    return InvalidRows([message] if single else {i: [message]})


def _cell_error(i: int, j: int | str, message: str, single: bool) -> InvalidRows:
    # A key is the client's text: the message repeats only its start.
    j = clip(j) if isinstance(j, str) else j
    return InvalidRows({j: [message]} if single else {i: {j: [message]}})
