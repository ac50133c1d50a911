"""The domain error tree: each error carries its status, and nothing here knows a transport.

Every front-end maps ``status`` once: the REST layer to HTTP answers
(``rest/errors.py``), a gRPC servicer to status codes. Messages are complete
sentences for the user; ``errors`` holds optional field-level detail.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class IrisServiceError(Exception):
    """Base of every error we raise on purpose; ``status`` is its HTTP status."""

    status = 500
    message = "Internal error."

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.errors = errors
        self.headers = dict(headers or {})


class BadRequest(IrisServiceError):
    status = 400
    message = "The request is not valid."


class InvalidInput(IrisServiceError):
    """The body parsed but its values do not fit the model (422, like webargs)."""

    status = 422
    message = "The request body does not fit the model's input."


class Unauthorized(IrisServiceError):
    status = 401
    message = "Missing or wrong credentials."


class NotFound(IrisServiceError):
    status = 404
    message = "Not found."


class ModelNotFound(NotFound):
    message = "No such model."


class PayloadTooLarge(IrisServiceError):
    status = 413
    message = "The request body is larger than the server accepts."


class UnsupportedMediaType(IrisServiceError):
    status = 415
    message = "Send the body as application/json."


class ModelNotReady(IrisServiceError):
    status = 503
    message = "The model is not loaded."


class ArtifactError(IrisServiceError):
    """An artifact failed verification or could not be loaded."""

    status = 409
    message = "The artifact could not be verified."


class ConfigError(RuntimeError):
    """The configuration cannot produce a working service; start-up stops with this one line."""
