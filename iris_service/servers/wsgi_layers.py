"""WSGI layers that give granian what waitress does itself: a url prefix, trusted proxy headers, chunked limits.

waitress mounts the app under ``url_prefix``, believes forwarding headers only
from ``trusted_proxy``, and de-chunks a body into a Content-Length one that the
app can refuse by size. granian does less: its ``url_path_prefix`` cuts the
prefix's length off any path (``/xyzhealth`` reached ``/health`` under ``/api``),
it has no trusted proxy at all, and it hands a chunked body to the app with no
length, which Werkzeug then reads up to the limit and parses instead of refusing.
These layers sit between granian and the app; they know WSGI, not Flask.
"""
from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: Proxy headers a ``--trusted-proxy`` may be believed for (waitress's names).
KNOWN_PROXY_HEADERS = frozenset({"forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
                                 "x-forwarded-port", "x-forwarded-by"})
#: Bytes read at a time from a chunked body.
_CHUNK = 64 * 1024


def check_proxy_headers(names: set[str]) -> None:
    """Refuse unknown proxy header names, and ``forwarded`` mixed with the ``x-forwarded-*`` ones.

    The messages are waitress's, so both servers refuse a bad setting the same way.
    """
    unknown = sorted(names - KNOWN_PROXY_HEADERS)
    if unknown:
        raise ValueError(f"Received unknown trusted_proxy_headers value ({', '.join(unknown)}) expected one of "
                         f"{', '.join(sorted(KNOWN_PROXY_HEADERS))}")
    if "forwarded" in names and names - {"forwarded"}:
        raise ValueError("The Forwarded proxy header and the X-Forwarded-{By,Host,Proto,Port,For} headers are "
                         "mutually exclusive. Can't trust both!")


def _json_error(start_response: Callable[..., Any], code: int, status: str, message: str) -> list[bytes]:
    """Our JSON error shape, for answers a layer gives before the app runs."""
    body = json.dumps({"code": code, "status": status, "message": message}, separators=(",", ":")).encode()
    start_response(f"{code} {status}", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                        ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
    return [body]


class PrefixMount:
    """Serve the app under ``prefix`` (``/api``): ``/api/predict`` reaches ``/predict``, ``/predict`` is a 404."""

    def __init__(self, app: WSGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = "/" + prefix.strip("/")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path != self.prefix and not path.startswith(self.prefix + "/"):
            return _json_error(start_response, 404, "Not Found", f"Nothing is served outside {self.prefix}/.")
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.prefix
        environ["PATH_INFO"] = path[len(self.prefix):] or "/"
        return self.app(environ, start_response)


class TrustedProxy:
    """Believe ``headers`` only from ``proxy`` (an address, or ``*``), as waitress does with one proxy hop.

    The client address is the last hop the proxy names (the one it saw), so a
    client cannot choose its address by sending the header itself.
    """

    def __init__(self, app: WSGIApp, proxy: str, headers: set[str]) -> None:
        check_proxy_headers(headers)
        self.app = app
        self.proxy = proxy
        self.headers = frozenset(headers)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.proxy == "*" or environ.get("REMOTE_ADDR") == self.proxy:
            if "forwarded" in self.headers:
                self._forwarded(environ)
            else:
                self._x_forwarded(environ)
        return self.app(environ, start_response)

    def _x_forwarded(self, environ: dict[str, Any]) -> None:
        names = self.headers
        if "x-forwarded-for" in names and (value := _last(environ.get("HTTP_X_FORWARDED_FOR"))):
            environ["REMOTE_ADDR"] = value
        if "x-forwarded-proto" in names and (value := _last(environ.get("HTTP_X_FORWARDED_PROTO"))):
            if value.lower() in ("http", "https"):
                environ["wsgi.url_scheme"] = value.lower()
        if "x-forwarded-host" in names and (value := _last(environ.get("HTTP_X_FORWARDED_HOST"))):
            environ["HTTP_HOST"] = value
        if "x-forwarded-port" in names and (value := _last(environ.get("HTTP_X_FORWARDED_PORT"))):
            if value.isdigit():
                environ["SERVER_PORT"] = value

    @staticmethod
    def _forwarded(environ: dict[str, Any]) -> None:
        last = _last(environ.get("HTTP_FORWARDED"))
        for pair in (last or "").split(";"):
            key, _, value = pair.strip().partition("=")
            value = value.strip().strip('"')
            if not value:
                continue
            key = key.lower()
            if key == "for":
                environ["REMOTE_ADDR"] = value.strip("[]").rsplit("]:", 1)[0] if value.startswith("[") else value
            elif key == "proto" and value.lower() in ("http", "https"):
                environ["wsgi.url_scheme"] = value.lower()
            elif key == "host":
                environ["HTTP_HOST"] = value


def _last(value: str | None) -> str:
    """The last element of a comma-separated header: the hop the trusted proxy added."""
    return value.rsplit(",", 1)[-1].strip() if value else ""


class ChunkedBodyLimit:
    """Give the app a chunked body as a Content-Length one, read no further than ``limit`` + 1 bytes.

    Past the limit the app sees a declared length over it and answers its own
    413 without reading; the rest of the body is never read.
    """

    def __init__(self, app: WSGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("CONTENT_LENGTH") and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            stream = environ["wsgi.input"]
            pieces, size = [], 0
            while size <= self.limit:
                piece = stream.read(min(_CHUNK, self.limit + 1 - size))
                if not piece:
                    break
                pieces.append(piece)
                size += len(piece)
            environ["CONTENT_LENGTH"] = str(size)
            environ["wsgi.input"] = io.BytesIO(b"".join(pieces) if size <= self.limit else b"")
            # Werkzeug must take the length as given; our input ends where it says.
            environ.pop("wsgi.input_terminated", None)
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.app(environ, start_response)


def wrap(app: WSGIApp, *, url_prefix: str = "", trusted_proxy: str | None = None,
         trusted_proxy_headers: set[str] | None = None, body_limit: int | None = None) -> WSGIApp:
    """``app`` inside the layers its settings ask for (none: ``app`` itself)."""
    if body_limit is not None:
        app = ChunkedBodyLimit(app, body_limit)
    if trusted_proxy:
        app = TrustedProxy(app, trusted_proxy, set(trusted_proxy_headers or ()))
    if url_prefix.strip("/"):
        app = PrefixMount(app, url_prefix)
    return app
