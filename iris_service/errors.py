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
    """A request the protocol cannot read: malformed, or past a bound (400)."""

    status = 400
    message = "The request is not valid."


class InvalidInput(IrisServiceError):
    """The body parsed but its values do not fit the model (422, like webargs)."""

    status = 422
    message = "The request body does not fit the model's input."


class Unauthorized(IrisServiceError):
    """No key or token, or a wrong one; the answer says how to send it (401)."""

    status = 401
    message = "Missing or wrong credentials."


class NotFound(IrisServiceError):
    """No such route or thing; admin routes answer it when they are off (404)."""

    status = 404
    message = "Not found."


class ModelNotFound(NotFound):
    """No model (or version) of that name is configured."""

    message = "No such model."


class PayloadTooLarge(IrisServiceError):
    """A body past ``MAX_CONTENT_LENGTH``, raw or decompressed (413)."""

    status = 413
    message = "The request body is larger than the server accepts."


class UnsupportedMediaType(IrisServiceError):
    """A media type, charset or content coding no route of ours reads (415)."""

    status = 415
    message = "Send the body as application/json."


class ModelNotReady(IrisServiceError):
    """A configured model that is not loaded (yet, any more, or after a failed load): 503."""

    status = 503
    message = "The model is not loaded."


class NotExplainable(IrisServiceError):
    """The model is served but cannot be explained: its estimator, format or stored data (501)."""

    status = 501
    message = "Explanations are not available for this model."


class ArtifactError(IrisServiceError):
    """An artifact failed verification or could not be loaded."""

    status = 409
    message = "The artifact could not be verified."


class ConfigError(RuntimeError):
    """The configuration cannot produce a working service; start-up stops with this one line."""
