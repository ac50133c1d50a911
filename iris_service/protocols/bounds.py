"""How much a request may carry before any per-item work, and how much of it an error message may echo.

The body limit counts bytes, not work: 16 MiB of JSON (about 15 KiB gzipped)
holds 8 million list items, and a check that converts or names each of them
costs seconds of CPU and hundreds of MiB, or answers a message the size of the
request. So every list a request carries is measured (``len``, constant time)
against a bound derived from the model before anything iterates it, and every
message names at most a few offenders, each clipped, and a count.
"""
from __future__ import annotations

from collections.abc import Sequence

#: Columns (or keys, or values) a row may carry whatever the model: see ``max_columns``.
MIN_COLUMNS = 64
#: Longest CSV field: a number is at most a few dozen characters, a column name a few hundred.
MAX_FIELD_LENGTH = 1024
#: Entries of a ``parameters`` or ``params`` object (the protocols define a handful).
MAX_PARAMETERS = 64
#: How many offenders a message names before it only counts the rest.
SHOWN = 5
#: How many of the model's own names (the features it expects) a message lists.
NAMES_SHOWN = 16
#: How many characters of one client-supplied name a message repeats.
CLIPPED = 64


def max_columns(n_features: int) -> int:
    """The widest row, or longest list of column names, accepted for a model of ``n_features``.

    Any column beyond the model's features is refused anyway (unknown or given
    twice), so the bound only decides which message a client gets: up to four
    times the features (at least 64), the detailed one naming the unknown
    columns, for the usual mistakes (an id column, a few misspelled names);
    beyond it, a count, before a single name is read.
    """
    return max(4 * n_features, MIN_COLUMNS)


def clip(text: str, width: int = CLIPPED) -> str:
    """``text``, or its first characters and how long it was, when it is longer than ``width``."""
    if len(text) <= width:
        return text
    return f"{text[:width]}... ({len(text)} characters)"


def some(items: Sequence[object], shown: int = SHOWN, quote: bool = False) -> str:
    """``a, b, c`` for a few items; the first ``shown`` (each clipped, quoted if asked) and ``and N more`` for more."""
    named = ", ".join(repr(clip(str(item))) if quote else clip(str(item)) for item in items[:shown])
    rest = len(items) - shown
    return f"{named} and {rest} more" if rest > 0 else named


def misfit(missing: Sequence[object], unknown: Sequence[object], noun: str, quote_unknown: bool = False) -> str:
    """``Missing feature(s): a; unknown feature(s): x``: what a row or a header names wrongly, bounded.

    Only the first letter is upper-cased (``str.capitalize`` would lower-case the client's names).
    """
    parts = []
    if missing:
        parts.append(f"missing {noun}(s): {some(missing)}")
    if unknown:
        parts.append(f"unknown {noun}(s): {some(unknown, quote=quote_unknown)}")
    message = "; ".join(parts)
    return message[:1].upper() + message[1:]
