"""``serve --url-prefix``: the app answers under the prefix only; elsewhere a JSON 404 names the prefix.

Why not waitress's own ``url_prefix``: it strips the prefix when a path has it
and passes every other path through unchanged, so ``/predict`` answered beside
``/api/predict`` and a proxy's routing mistake went unnoticed. Mounting here
also works under any server ``serve`` drives, not waitress only. A proxy that
strips the prefix itself needs no ``--url-prefix`` at all.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click
import orjson

from ..rest.errors import PLAIN_ERROR_PATHS

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def normalized(prefix: str) -> str:
    """``api/`` -> ``/api``; ``""`` or ``/`` -> ``""`` (no prefix); a usage error for a query or a space."""
    if any(ch in prefix for ch in "?#") or any(ch.isspace() for ch in prefix):
        raise click.UsageError(f"--url-prefix {prefix!r} must be a path such as /api (no spaces, ? or #).")
    stripped = prefix.strip("/")
    return f"/{stripped}" if stripped else ""


def mount(app: WSGIApp, prefix: str) -> WSGIApp:
    """``app`` under ``prefix`` (``SCRIPT_NAME``), or ``app`` itself when there is no prefix."""
    if not prefix:
        return app

    def mounted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if path == prefix or path.startswith(prefix + "/"):
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = path[len(prefix):]
            return app(environ, start_response)
        return outside(environ, start_response, prefix, path)

    return mounted


def outside(environ: dict[str, Any], start_response: Callable[..., Any], prefix: str,
            path: str) -> Iterable[bytes]:
    """The 404 for a path outside the prefix, in the error shape the path's protocol uses."""
    method = environ.get("REQUEST_METHOD", "GET")
    message = f"No route for {method} {path}: this server answers under {prefix}/ (try {prefix}{path})."
    plain = path == "/v2" or path.startswith(PLAIN_ERROR_PATHS)
    body = orjson.dumps({"error": message} if plain else {"code": 404, "status": "Not Found", "message": message})
    start_response("404 NOT FOUND", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [] if method == "HEAD" else [body]
