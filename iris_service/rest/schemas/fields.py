"""marshmallow fields over the protocols' bulk row checks (``protocols/rows.py``), every list bounded first.

marshmallow converts a list item by item, so each list a body may carry is
measured against its bound (``protocols/bounds.py``: rows from the data plane's
``MAX_BATCH_SIZE``, columns from the widest model served) before any item is read.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import current_app, has_app_context
from marshmallow import ValidationError, fields

from ...protocols import bounds
from ...protocols.rows import InvalidRows, NamedRows, Rows, named_rows, positional_rows
from ..state import EXTENSION_KEY

__all__ = ["BoundedDict", "BoundedList", "FeatureRow", "FeatureRows", "NamedRows", "Rows", "as_validation_error",
           "max_batch_size", "max_columns", "max_inputs", "named_rows", "positional_rows", "width_limit"]


@contextmanager
def as_validation_error() -> Iterator[None]:
    """The rows' own complaint, as the field error webargs reports under the field's name."""
    try:
        yield
    except InvalidRows as exc:
        raise ValidationError(exc.messages) from None


class FeatureRow(fields.Field):
    """One row: a list of numbers or an object keyed by feature name."""

    default_error_messages = {
        "type": "Must be a list of numbers or an object of feature name to number.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Rows:
        try:  # try/except rather than as_validation_error(): this is every one-row request's path
            if isinstance(value, list):
                return positional_rows([value], single=True, max_width=width_limit(len(value)))
            if isinstance(value, dict):
                return named_rows([value], single=True, max_width=width_limit(len(value)))
        except InvalidRows as exc:
            raise ValidationError(exc.messages) from None
        raise self.make_error("type")


class FeatureRows(fields.Field):
    """A batch: a non-empty list of rows, all lists or all objects."""

    default_error_messages = {
        "type": "Must be a list of rows (lists of numbers or objects of feature name to number).",
        "empty": "Must contain at least one row.",
        "too_many": "At most {limit} rows per request; got {count}.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Rows:
        if not isinstance(value, list):
            raise self.make_error("type")
        if not value:
            raise self.make_error("empty")
        limit = max_batch_size()
        if limit is not None and len(value) > limit:
            raise self.make_error("too_many", limit=limit, count=len(value))
        with as_validation_error():
            if isinstance(value[0], dict):
                return named_rows(value, max_width=max_columns())
            first = value[0]
            return positional_rows(value, max_width=width_limit(len(first)) if isinstance(first, list) else None)
        raise AssertionError("unreachable")


class BoundedList(fields.List):
    """A ``fields.List`` whose length is checked before marshmallow converts a single item.

    ``limit`` is called per request (the data plane's bounds can change with the
    models served) and may return None for no bound; it is not called for lists
    of at most ``at_least`` items, which it always allows.
    """

    default_error_messages = {"too_long": "At most {limit} {what}; got {count}."}

    def __init__(self, inner: Any, *, limit: Callable[[], int | None], what: str, at_least: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(inner, **kwargs)
        self._limit = limit
        self._what = what
        self._at_least = at_least

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        if isinstance(value, list) and len(value) > self._at_least:
            limit = self._limit()
            if limit is not None and len(value) > limit:
                raise self.make_error("too_long", limit=limit, what=self._what, count=len(value))
        return super()._deserialize(value, attr, data, **kwargs)  # type: ignore[no-any-return]


class BoundedDict(fields.Dict):
    """A ``fields.Dict`` of at most ``bounds.MAX_PARAMETERS`` entries, counted before it is copied."""

    default_error_messages = {"too_long": "At most {limit} entries; got {count}."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, dict) and len(value) > bounds.MAX_PARAMETERS:
            raise self.make_error("too_long", limit=bounds.MAX_PARAMETERS, count=len(value))
        return super()._deserialize(value, attr, data, **kwargs)


def width_limit(width: int) -> int | None:
    """``max_columns()`` for a row of ``width`` values, looked up only when it could exceed it.

    Every model accepts ``bounds.MIN_COLUMNS`` values, so the common row (a
    handful of numbers) costs no look-up of the models served.
    """
    return max_columns() if width > bounds.MIN_COLUMNS else None


def max_columns() -> int | None:
    """The widest row (columns, keys) the schemas accept: ``bounds.max_columns`` of the widest model served.

    The schema runs before the route's model is looked up, so it bounds by the
    widest; the protocol checks the exact model's width again when it decodes.
    """
    plane = _dataplane()
    if plane is None:
        return None
    return bounds.max_columns(plane.max_features())


def max_inputs() -> int | None:
    """The most V2 input tensors the schema accepts: one per feature of the widest model served (at least one)."""
    plane = _dataplane()
    if plane is None:
        return None
    return max(plane.max_features(), 1)


def _dataplane() -> Any:
    if not has_app_context():
        return None
    state = current_app.extensions.get(EXTENSION_KEY)
    return state.dataplane if state is not None else None


def max_batch_size() -> int | None:
    """The data plane's row limit, checked here too so a huge body is refused before it is converted."""
    plane = _dataplane()
    return plane.settings.max_batch_size if plane is not None else None
