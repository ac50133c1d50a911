"""Where a JSON body holds ``NaN`` or ``Infinity``: the cell MLflow's client wrote a missing value into.

MLflow's client serialises a DataFrame with the standard library's ``json``,
which writes a missing value as the bare literal ``NaN`` (and infinities as
``Infinity``). JSON has no such literals, so our parser refuses the body as
malformed; this finds the first one and names its row and column instead.
It runs only on a body that already failed to parse, so the slower standard
library parser costs nothing on the request path.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest

_LITERALS = (b"NaN", b"Infinity")
#: Longest column name quoted back in a message.
_LONGEST_NAME = 64


class _NonFinite:
    """Stands for a ``NaN``/``Infinity`` literal while the body is parsed."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def non_finite_cell(data: bytes) -> BadRequest | None:
    """The 400 naming the first non-finite literal's row and column, or None if there is none.

    ``None`` also when the body is malformed for another reason: the parser's
    own message then says what is wrong.
    """
    if not any(literal in data for literal in _LITERALS):
        return None
    try:
        body = json.loads(data, parse_constant=_NonFinite)
    except (ValueError, RecursionError):
        return None
    found = _locate(body)
    if found is None:
        return None
    literal, where = found
    if where.startswith("json"):  # not a cell of the rows: name the place and the JSON rule
        return BadRequest(f"{literal.literal} at {where} is not valid JSON; send a number or null.")
    if literal.literal == "NaN":
        return BadRequest(
            f"Missing value (NaN) at {where}: the model needs a number in every cell "
            "(pandas writes a missing value as NaN, which JSON does not allow; fill or drop it before sending)."
        )
    return BadRequest(f"{literal.literal} at {where} is not a finite number; send finite numbers.")


def _locate(body: Any) -> tuple[_NonFinite, str] | None:
    """The first literal and where it is, in the words of the body's format."""
    if not isinstance(body, Mapping):
        return _walk(body, "json")
    for key, value in body.items():
        if key == "dataframe_split" and isinstance(value, Mapping):
            found = _in_rows(value.get("data"), value.get("columns"), value.get("index"))
        elif key in ("dataframe_records", "instances") or (key == "inputs" and isinstance(value, list)):
            found = _in_rows(value, None, None)
        elif key == "inputs" and isinstance(value, Mapping):
            found = _in_columns(value)
        else:
            found = None
        found = found or _walk(value, f"json.{key}")
        if found is not None:
            return found
    return None


def _in_rows(rows: Any, columns: Any, index: Any) -> tuple[_NonFinite, str] | None:
    if not isinstance(rows, list):
        return None
    names = columns if isinstance(columns, list) else None
    labels = index if isinstance(index, list) and len(index) == len(rows) else None
    for r, row in enumerate(rows):
        cells = row.items() if isinstance(row, Mapping) else enumerate(row) if isinstance(row, list) else ()
        for c, cell in cells:
            if isinstance(cell, _NonFinite):
                label = f" (index {_shown(labels[r])})" if labels is not None and labels[r] != r else ""
                column = names[c] if names is not None and isinstance(c, int) and c < len(names) else c
                return cell, f"row {r}{label}, column {_shown(column)}"
    return None


def _in_columns(columns: Mapping[str, Any]) -> tuple[_NonFinite, str] | None:
    for name, values in columns.items():
        if isinstance(values, list):
            for r, cell in enumerate(values):
                if isinstance(cell, _NonFinite):
                    return cell, f"row {r}, column {_shown(name)}"
    return None


def _walk(value: Any, path: str) -> tuple[_NonFinite, str] | None:
    """Anywhere else: the JSON path of the first literal.

    Iterative, so depth costs no stack; each entry links to its parent, so a
    path is spelled out only for the literal found.
    """
    stack: list[tuple[Any, Any]] = [(value, (path, None))]
    while stack:
        item, node = stack.pop()
        if isinstance(item, _NonFinite):
            parts = []
            while node is not None:
                parts.append(str(node[0]))
                node = node[1]
            return item, ".".join(reversed(parts))
        if isinstance(item, Mapping):
            stack.extend((v, (k, node)) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, (i, node)) for i, v in reversed(list(enumerate(item))))
    return None


def _shown(value: Any) -> str:
    if isinstance(value, str) and len(value) > _LONGEST_NAME:
        value = value[:_LONGEST_NAME] + "..."
    return repr(value) if isinstance(value, str) else str(value)
