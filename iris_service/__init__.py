"""iris-service: scikit-learn models behind a validated, production-ready REST API.

The web layer is imported on first use of ``create_app`` or ``ModelStore``, so
``import iris_service.artifacts`` (the training code, file scoring, a gRPC
front-end) never loads Flask.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .rest.state import ModelStore

__all__ = ["ModelStore", "__version__", "create_app"]


def create_app(config: Any = None) -> Any:
    """Build the Flask app (see ``iris_service.rest.factory.create_app``)."""
    from .rest.factory import create_app as factory

    return factory(config)


def __getattr__(name: str) -> Any:
    if name == "ModelStore":
        from .rest.state import ModelStore

        return ModelStore
    raise AttributeError(f"module 'iris_service' has no attribute {name!r}")
