"""marshmallow fields over the protocols' bulk row checks (``protocols/rows.py``)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import current_app, has_app_context
from marshmallow import ValidationError, fields

from ...protocols.rows import InvalidRows, NamedRows, Rows, named_rows, positional_rows
from ..state import EXTENSION_KEY

__all__ = ["FeatureRow", "FeatureRows", "NamedRows", "Rows", "as_validation_error", "max_batch_size", "named_rows", "positional_rows"]


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
                return positional_rows([value], single=True)
            if isinstance(value, dict):
                return named_rows([value], single=True)
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
                return named_rows(value)
            return positional_rows(value)
        raise AssertionError("unreachable")


def max_batch_size() -> int | None:
    """The data plane's row limit, checked here too so a huge body is refused before it is converted."""
    if not has_app_context():
        return None
    state = current_app.extensions.get(EXTENSION_KEY)
    return state.dataplane.settings.max_batch_size if state is not None and state.dataplane else None
