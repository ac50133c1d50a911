"""The REST layer's one error handler: every error becomes a JSON answer in its route's style.

Native routes answer flask-smorest's shape (``code``, ``status``, ``message``,
``errors``) so clients see one format whether webargs or our code refused the
request; protocol routes whose specification says so (V1, V2, MLflow) answer
``{"error": "..."}``. Each blueprint declares its style once
(``Blueprint(..., error_style=PLAIN)``); routing errors (404/405) have no
blueprint, so the style is picked by the URL prefixes of the plain blueprints.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.http import HTTP_STATUS_CODES

from ..errors import IrisServiceError
from .json import json_response
from .middleware.request_log import printable

log = logging.getLogger("iris_service.errors")

NATIVE = "native"
PLAIN = "plain"
#: URL prefixes of the plain-style protocols, for errors raised before a blueprint is chosen.
PLAIN_ERROR_PATHS = ("/v1/", "/v2/", "/invocations", "/ping", "/version")
#: The message of webargs' validation errors; the field errors say the rest.
INVALID_BODY = "The request body is not valid; see errors."


def register_error_handlers(app: Flask) -> None:
    """Make every error a JSON answer; log the unexpected ones with a traceback."""
    app.register_error_handler(IrisServiceError, _handle_domain_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)


def register_blueprint_error_handlers(blueprint: Blueprint) -> None:
    """Give a blueprint our JSON errors even when mounted in someone else's app.

    A host app keeps its own handlers for its own routes; errors raised inside
    our views (including webargs' 422) still answer in our shape.
    """
    blueprint.register_error_handler(IrisServiceError, _handle_domain_error)
    blueprint.register_error_handler(HTTPException, _handle_http_exception)


def error_style() -> str:
    """The current route's error style: its blueprint's declaration, else the URL prefix."""
    name = request.blueprint
    if name is not None:
        return getattr(current_app.blueprints.get(name), "error_style", NATIVE)
    path = request.path
    return PLAIN if path == "/v2" or path.startswith(PLAIN_ERROR_PATHS) else NATIVE


def error_response(
    status: int,
    message: str,
    errors: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Build the JSON error body in the shape the current route's protocol uses."""
    if error_style() == PLAIN:
        payload: dict[str, Any] = {"error": _flatten(message, errors)}
    else:
        payload = {
            "code": status,
            "status": HTTP_STATUS_CODES.get(status, "Error"),
            "message": message,
        }
        if errors:
            payload["errors"] = errors
    request_id = g.get("request_id")
    if request_id and status >= 500:
        payload["request_id"] = request_id
    response = json_response(payload)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _handle_domain_error(error: IrisServiceError) -> Response:
    return error_response(error.status, error.message, error.errors, error.headers)


def _handle_http_exception(error: HTTPException) -> Response:
    if isinstance(error, InternalServerError) and error.original_exception is not None:
        return _handle_unexpected(error.original_exception)
    data = getattr(error, "data", None) or {}
    errors = data.get("errors") or data.get("messages")
    message = data.get("message") or _message_for(error, errors)
    headers = dict(data.get("headers") or {})
    # 405 must say which methods are allowed (RFC 9110); werkzeug computed it.
    headers.update((k, v) for k, v in error.get_headers() if k.lower() == "allow")
    return error_response(error.code or 500, message, errors, headers)


def _handle_unexpected(error: BaseException) -> Response:
    if isinstance(error, IrisServiceError):
        return _handle_domain_error(error)
    if isinstance(error, HTTPException):
        return _handle_http_exception(error)
    log.error(
        "unhandled error on %s %s (request id %s)",
        printable(request.method),
        printable(request.path),  # a client's path: a newline in it must not start a line
        g.get("request_id", "-"),
        exc_info=error,
    )
    return error_response(500, "Internal server error; the error was logged.")


def _message_for(error: HTTPException, errors: Any) -> str:
    if errors:
        return INVALID_BODY
    if error.code == 404:
        return f"No route for {request.method} {request.path}."
    if error.code == 405:
        return f"Method {request.method} is not allowed on {request.path}."
    if error.code == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return f"The request body is larger than the limit of {limit} bytes."
    return error.description or HTTP_STATUS_CODES.get(error.code or 500, "Error")


def _flatten(message: str, errors: Mapping[str, Any] | None) -> str:
    """One readable line for protocols whose errors are a single string.

    Our own errors' messages are complete (their ``errors`` are extra detail);
    only webargs' generic message is replaced by the field errors it points to.
    """
    if not errors or message != INVALID_BODY:
        return message
    parts = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(prefix, item)
        else:
            parts.append(f"{prefix}: {value}" if prefix else str(value))

    walk("", errors)
    return "; ".join(parts) or message
