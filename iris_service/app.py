"""The Flask class the factory builds: Flask with one per-request cost removed."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from flask import Flask


class IrisFlask(Flask):
    """Flask whose ``ensure_sync`` remembers which functions are coroutines.

    Flask asks ``inspect.iscoroutinefunction`` about every hook, view and
    flask-smorest decorator layer on every request (about 17 times for
    ``/predict``); the answer never changes, so it is looked up once per
    function. Bound methods are keyed by their function, so the cache stays as
    small as the code base.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._is_coroutine: dict[Callable[..., Any], bool] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        key = getattr(func, "__func__", func)
        try:
            is_coroutine = self._is_coroutine[key]
        except KeyError:
            is_coroutine = self._is_coroutine[key] = inspect.iscoroutinefunction(func)
        except TypeError:  # an unhashable callable: ask every time, as Flask does
            is_coroutine = inspect.iscoroutinefunction(func)
        return self.async_to_sync(func) if is_coroutine else func
