"""Compression on the wire: gzip or deflate request bodies in, large answers gzipped out.

Requests with ``Content-Encoding: gzip`` (every member of a multi-member body) or
``deflate`` (zlib-wrapped as RFC 9110 says, or the raw deflate some clients send)
are decompressed as they are read, a chunk at a time, and never past
``MAX_CONTENT_LENGTH`` decompressed bytes, so a bomb costs the server at most that
much memory before it answers 413. Any other coding is a 415 when the body is read:
reading it as plain JSON would answer for bytes the client did not mean.
Answers of at least ``COMPRESS_MIN_SIZE`` bytes are gzip-compressed for clients
that accept it (a 10,000-row batch answer shrinks about tenfold), as MLServer does.
"""
from __future__ import annotations

import functools
import gzip
import io
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_accept_header
from werkzeug.wsgi import get_input_stream

from ...errors import BadRequest, UnsupportedMediaType
from ..state import state_of

DEFAULT_MIN_SIZE = 1024
DEFAULT_LEVEL = 5
_CHUNK = 64 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS
#: Request codings by ``Content-Encoding`` value (lowercased), and what they decode as.
_DECODED = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}
#: Values that mean the body is sent as it is.
_PLAIN = ("", "identity")
#: What a 415 for an unknown coding offers instead (RFC 9110 15.5.16: in ``Accept-Encoding``).
SUPPORTED_REQUEST_ENCODINGS = "gzip, deflate"
_COMPRESSIBLE = ("application/json", "text/", "application/javascript", "image/svg+xml")


@dataclass(frozen=True)
class CompressionSettings:
    """Read once from the config: the threshold and level of response compression."""

    min_size: int
    level: int
    enabled: bool


class Compression:
    """Flask extension: gzip and deflate request bodies (bounded) and gzip answers."""

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
        app.wsgi_app = RequestDecodingMiddleware(app.wsgi_app, app)  # type: ignore[method-assign]
        if settings.enabled:
            app.after_request(functools.partial(compress_response, settings=settings))
        return settings


class RequestDecodingMiddleware:
    """WSGI middleware: hand the app a decoding ``wsgi.input`` for a compressed body.

    The stream is lazy, so nothing is decompressed (or refused) unless a view reads
    the body, and Werkzeug's ``max_content_length`` check and ours both apply to the
    decompressed bytes; errors surface inside the request, as JSON answers in the
    route's error shape.
    """

    def __init__(self, wsgi_app: Any, app: Flask) -> None:
        self.wsgi_app = wsgi_app
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        header = environ.get("HTTP_CONTENT_ENCODING")
        if header is None:
            return self.wsgi_app(environ, start_response)
        encoding = header.strip().lower()
        if encoding in _PLAIN:
            return self.wsgi_app(environ, start_response)
        coding = _DECODED.get(encoding)
        stream: io.RawIOBase
        if coding is None:
            # br, zstd, a list of codings ("gzip, br"), anything made up: refused on read.
            stream = RefusedStream(header.strip())
        else:
            limit = self.app.config.get("MAX_CONTENT_LENGTH")
            # Bound the compressed bytes too (by Content-Length or the limit), lazily:
            # a 413 raised here, outside Flask, could not become a JSON answer.
            original = dict(environ)
            stream = InflateStream(lambda: get_input_stream(original, max_content_length=limit), limit, coding)
            environ.pop("HTTP_CONTENT_ENCODING", None)
            environ["iris_service.request_encoding"] = encoding
        environ["wsgi.input"] = io.BufferedReader(stream, buffer_size=_CHUNK)
        environ["wsgi.input_terminated"] = True
        environ.pop("CONTENT_LENGTH", None)
        return self.wsgi_app(environ, start_response)


class RefusedStream(io.RawIOBase):
    """A body in a coding we cannot decode: reading it is a 415 naming the ones we can."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        shown = self._encoding if len(self._encoding) <= 40 else self._encoding[:40] + "..."
        raise UnsupportedMediaType(
            f"Content-Encoding {shown!r} is not supported; send the body as gzip, deflate or identity.",
            headers={"Accept-Encoding": SUPPORTED_REQUEST_ENCODINGS},
        )


def _is_zlib_header(head: bytes) -> bool:
    """Whether two bytes open a zlib stream (RFC 1950), not raw deflate (RFC 1951).

    A zlib header says deflate (CM 8) with a window of at most 32 KiB and its check
    bits make it a multiple of 31. Raw deflate cannot start that way unless it opens
    with a non-final stored block whose padding bits are not zero, which no encoder writes.
    """
    cmf, flg = head[0], head[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0


class InflateStream(io.RawIOBase):
    """A raw stream of the decompressed body that refuses to grow past ``limit`` bytes.

    Each ``readinto`` inflates at most the caller's buffer size (``max_length``),
    keeping the unconsumed input for the next call: memory stays one chunk however
    large the body claims to be. A gzip body is every member in turn (what
    ``gzip -c a b`` writes), the limit counting them all; a deflate body is one stream.
    Bytes after the end that do not decode are a 400, not silently dropped.
    """

    def __init__(self, open_raw: Callable[[], IO[bytes]], limit: int | None, coding: str = "gzip") -> None:
        self._open_raw = open_raw
        self._raw: IO[bytes] | None = None
        self._limit = limit
        self._coding = coding
        # Made when a member's first bytes arrive (deflate picks zlib or raw from them).
        self._inflater: Any = None
        self._members = 0
        self._pending = b""
        self._produced = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        limit = self._limit
        # Never inflate more than one byte past the limit: one inflate call could
        # otherwise overshoot it, and a reader that stops at the limit would then
        # see a body cut short instead of a 413.
        out = self._inflate(len(view) if limit is None else min(len(view), limit - self._produced + 1))
        if out:
            self._produced += len(out)
            # Readers stop at exactly the limit (Werkzeug's does), so look one byte
            # past it: anything there makes the body too large.
            if limit is not None and (self._produced > limit or (self._produced == limit and self._inflate(1))):
                raise RequestEntityTooLarge()
            view[: len(out)] = out
        return len(out)

    def _read_raw(self) -> bytes:
        if self._raw is None:
            self._raw = self._open_raw()
        return self._raw.read(_CHUNK)

    def _inflate(self, size: int) -> bytes:
        """Up to ``size`` decompressed bytes; ``b""`` at the end of the body."""
        while not self._eof:
            if not self._pending:
                self._pending = self._read_raw()
                if not self._pending:
                    if self._inflater is not None or self._members == 0:
                        raise BadRequest(f"The {self._coding} request body is truncated.")
                    self._eof = True
                    break
            if self._inflater is None:
                self._inflater = self._start_member()
            try:
                out = self._inflater.decompress(self._pending, size)
            except zlib.error:
                raise BadRequest(f"The request body is not valid {self._coding}.") from None
            self._pending = self._inflater.unconsumed_tail
            if self._inflater.eof:
                # What follows this member (if anything) starts the next one.
                self._pending = self._inflater.unused_data
                self._inflater = None
                self._members += 1
            if out:
                return out
        return b""

    def _start_member(self) -> Any:
        """A decompressor for the member starting at ``self._pending``."""
        if self._coding == "gzip":
            return zlib.decompressobj(_GZIP_WBITS)
        if self._members:
            raise BadRequest("The request body is not valid deflate: bytes follow the end of its stream.")
        while len(self._pending) < 2:
            more = self._read_raw()
            if not more:
                raise BadRequest("The deflate request body is truncated.")
            self._pending += more
        return zlib.decompressobj(zlib.MAX_WBITS if _is_zlib_header(self._pending) else -zlib.MAX_WBITS)


def gzip_accepted(accept_encoding: str) -> bool:
    """Whether a raw ``Accept-Encoding`` allows gzip (``q=0`` refuses it).

    The header is parsed only when it names ``gzip`` or ``*``: parsing costs more
    than the rest of the hook, and most clients of a prediction API (and load
    generators) send no ``Accept-Encoding`` at all.
    """
    if not accept_encoding or not ("*" in accept_encoding or "gzip" in accept_encoding.lower()):
        return False
    return parse_accept_header(accept_encoding).quality("gzip") > 0


def gzipped(body: bytes, settings: CompressionSettings, accept_encoding: str) -> bytes | None:
    """``body`` gzipped for a client whose ``Accept-Encoding`` takes it, if at least ``min_size``; else None.

    The hook's decision on a buffered JSON answer, and the row lane's (``rest/lane``).
    """
    if len(body) < settings.min_size or not gzip_accepted(accept_encoding):
        return None
    return gzip.compress(body, compresslevel=settings.level, mtime=0)


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
    accept_encoding = req.environ.get("HTTP_ACCEPT_ENCODING", "")
    if (
        not gzip_accepted(accept_encoding)
        or response.direct_passthrough
        or response.is_streamed
        or has_encoding
        or response.status_code < 200
        or response.status_code in (204, 206, 304)
        or req.method == "HEAD"
        or not (response.mimetype or "").startswith(_COMPRESSIBLE)
    ):
        return response
    body = gzipped(response.get_data(), settings, accept_encoding)
    if body is None:
        return response
    response.set_data(body)
    headers["Content-Encoding"] = "gzip"
    return response
