"""gzip on the wire: compressed request bodies in, large answers compressed out.

Requests with ``Content-Encoding: gzip`` are decompressed as they are read, a
chunk at a time, and never past ``MAX_CONTENT_LENGTH`` decompressed bytes, so a
gzip bomb costs the server at most that much memory before it answers 413.
Answers of at least ``COMPRESS_MIN_SIZE`` bytes are gzip-compressed for clients
that accept it (a 10,000-row batch answer shrinks about tenfold), as MLServer does.
"""
from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

from flask import Flask, Response, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from ..state import state_of

DEFAULT_MIN_SIZE = 1024
DEFAULT_LEVEL = 5
_CHUNK = 64 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_COMPRESSIBLE = ("application/json", "text/", "application/javascript", "image/svg+xml")


@dataclass(frozen=True)
class CompressionSettings:
    """Read once from the config: the threshold and level of response compression."""

    min_size: int
    level: int
    enabled: bool


class Compression:
    """Flask extension: gzip request bodies (bounded) and gzip answers."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> CompressionSettings:
        """Wrap ``app.wsgi_app`` for request bodies and register the response hook.

        Register it before the hooks that read response bodies (security headers
        hash the HTML they send): Flask runs ``after_request`` hooks last-registered
        first, so this one then sees the final body.
        """
        settings = CompressionSettings(
            min_size=int(app.config.get("COMPRESS_MIN_SIZE", DEFAULT_MIN_SIZE)),
            level=int(app.config.get("COMPRESS_LEVEL", DEFAULT_LEVEL)),
            enabled=bool(app.config.get("COMPRESS_RESPONSES", True)),
        )
        state_of(app).compression = settings
        app.wsgi_app = GzipRequestMiddleware(app.wsgi_app, app)  # type: ignore[method-assign]
        if settings.enabled:
            app.after_request(lambda response: compress_response(response, settings))
        return settings


class GzipRequestMiddleware:
    """WSGI middleware: hand the app a decompressing ``wsgi.input`` for gzip bodies.

    The stream is lazy, so nothing is decompressed unless a view reads the body,
    and Werkzeug's ``max_content_length`` check and ours both apply to the
    decompressed bytes; errors surface inside the request, as JSON answers.
    """

    def __init__(self, wsgi_app: Any, app: Flask) -> None:
        self.wsgi_app = wsgi_app
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        encoding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            limit = self.app.config.get("MAX_CONTENT_LENGTH")
            # Bound the compressed bytes too (by Content-Length or the limit), lazily:
            # a 413 raised here, outside Flask, could not become a JSON answer.
            original = dict(environ)
            stream = GunzipStream(lambda: get_input_stream(original, max_content_length=limit), limit)
            environ["wsgi.input"] = io.BufferedReader(stream, buffer_size=_CHUNK)
            environ["wsgi.input_terminated"] = True
            environ.pop("CONTENT_LENGTH", None)
            environ.pop("HTTP_CONTENT_ENCODING", None)
            environ["iris_service.request_encoding"] = encoding
        return self.wsgi_app(environ, start_response)


class GunzipStream(io.RawIOBase):
    """A raw stream of the decompressed body that refuses to grow past ``limit`` bytes.

    Each ``readinto`` inflates at most the caller's buffer size (``max_length``),
    keeping the unconsumed input for the next call: memory stays one chunk however
    large the body claims to be.
    """

    def __init__(self, open_raw: Callable[[], IO[bytes]], limit: int | None) -> None:
        self._open_raw = open_raw
        self._raw: IO[bytes] | None = None
        self._limit = limit
        self._inflater = zlib.decompressobj(_GZIP_WBITS)
        self._pending = b""
        self._produced = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        out = self._inflate(len(view))
        if out:
            self._produced += len(out)
            if self._limit is not None and self._produced >= self._limit and self._inflate(1):
                # Readers stop at exactly the limit (Werkzeug's does), so look one
                # byte past it: anything there makes the body too large.
                raise RequestEntityTooLarge()
            view[: len(out)] = out
        return len(out)

    def _inflate(self, size: int) -> bytes:
        """Up to ``size`` decompressed bytes; ``b""`` at the end of the gzip member."""
        while not self._eof:
            if not self._pending:
                if self._raw is None:
                    self._raw = self._open_raw()
                self._pending = self._raw.read(_CHUNK)
                if not self._pending:
                    if not self._inflater.eof:
                        raise BadRequest("The gzip request body is truncated.")
                    self._eof = True
                    break
            try:
                out = self._inflater.decompress(self._pending, size)
            except zlib.error:
                raise BadRequest("The request body is not valid gzip.") from None
            self._pending = self._inflater.unconsumed_tail
            if self._inflater.eof:
                # Trailing bytes after the gzip member are ignored, as gzip(1) does.
                self._pending = b""
                self._eof = True
            if out:
                return out
        return b""


def accepts_gzip() -> bool:
    """Whether the client's ``Accept-Encoding`` allows gzip (``q=0`` refuses it)."""
    return request.accept_encodings.quality("gzip") > 0


def _may_accept_gzip(accept_encoding: str) -> bool:
    """False when the raw header cannot allow gzip: it names neither ``gzip`` nor ``*``.

    Parsing the header costs more than the rest of the hook; most clients of a
    prediction API (and load generators) send no ``Accept-Encoding`` at all.
    """
    return bool(accept_encoding) and ("*" in accept_encoding or "gzip" in accept_encoding.lower())


def compress_response(response: Response, settings: CompressionSettings) -> Response:
    """gzip a large, compressible, buffered answer for a client that accepts it."""
    headers = response.headers
    has_vary = has_encoding = False
    for key, _ in headers:
        lower = key.lower()
        if lower == "vary":
            has_vary = True
        elif lower == "content-encoding":
            has_encoding = True
    if has_vary:
        response.vary.add("Accept-Encoding")
    else:
        # What vary.add writes on a response without Vary, without parsing a header set.
        headers.add("Vary", "Accept-Encoding")
    req = request._get_current_object()  # type: ignore[attr-defined]
    if (
        not _may_accept_gzip(req.environ.get("HTTP_ACCEPT_ENCODING", ""))
        or response.direct_passthrough
        or response.is_streamed
        or has_encoding
        or response.status_code < 200
        or response.status_code in (204, 206, 304)
        or req.method == "HEAD"
        or not (response.mimetype or "").startswith(_COMPRESSIBLE)
        or not accepts_gzip()
    ):
        return response
    body = response.get_data()
    if len(body) < settings.min_size:
        return response
    response.set_data(gzip.compress(body, compresslevel=settings.level, mtime=0))
    headers["Content-Encoding"] = "gzip"
    return response
