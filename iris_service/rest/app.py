"""The Flask class the factory builds: one per-request cost removed, large answers sent from memory."""
from __future__ import annotations

import inspect
import io
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response

#: Bodies of at least this many bytes are handed to the server as a ``wsgi.file_wrapper``:
#: waitress's default ``outbuf_overflow``, from which it would spool the body to a file.
#: Smaller bodies gain nothing measurable (a 150 kB answer was as fast either way).
FILE_WRAPPER_MIN_SIZE = 1024 * 1024
_NO_BODY = (204, 304)


class _ClosingBody(io.BytesIO):
    """The body as a file that also closes its response, as werkzeug's ClosingIterator would."""

    def __init__(self, body: bytes, response: Response) -> None:
        super().__init__(body)
        self._response = response

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._response.close()


class IrisResponse(Response):
    """Flask's Response, handing a large buffered body to the server as a file.

    waitress copies an answer into its output buffer and, past 1 MiB (its
    ``outbuf_overflow``), spools it to a temporary file before sending it; a
    10,000-row ``/predict`` answer is 1.5 MB. Given the server's own
    ``wsgi.file_wrapper`` (PEP 3333's optional fast path), waitress sends straight
    from the bytes in memory. Decided in ``get_app_iter``, after every hook (gzip
    included) has seen and possibly replaced the body; servers without a file
    wrapper, HEAD requests and bodiless statuses take werkzeug's path.
    """

    def get_app_iter(self, environ: dict[str, Any]) -> Iterable[bytes]:
        body = self.response
        wrapper = environ.get("wsgi.file_wrapper")
        if (
            wrapper is None
            or self.direct_passthrough
            or type(body) is not list
            or len(body) != 1
            or type(body[0]) is not bytes
            or len(body[0]) < FILE_WRAPPER_MIN_SIZE
            or environ.get("REQUEST_METHOD") == "HEAD"
            or self.status_code < 200
            or self.status_code in _NO_BODY
        ):
            return super().get_app_iter(environ)
        data = body[0]
        return wrapper(_ClosingBody(data, self), len(data))  # type: ignore[no-any-return]


class IrisFlask(Flask):
    """Flask whose ``ensure_sync`` remembers which functions are coroutines.

    Flask asks ``inspect.iscoroutinefunction`` about every hook, view and
    flask-smorest decorator layer on every request (about 17 times for
    ``/predict``); the answer never changes, so it is looked up once per
    function. Bound methods are keyed by their function, so the cache stays as
    small as the code base. Its responses are ``IrisResponse``: large bodies go
    to the server as its file wrapper.
    """

    response_class = IrisResponse

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
