"""The app as a WSGI server process runs it: ``create_app`` plus the process's one-time effects.

For servers that take an app factory or object: ``waitress-serve --call
iris_service.cli.wsgi:create_app``, and the repository's ``wsgi.py`` (gunicorn).
"""
from __future__ import annotations

from typing import Any

from ..rest.factory import create_app as _factory
from .process import prepare


def create_app(config: Any = None) -> Any:
    """``iris_service.create_app(config)``, then ``process.prepare`` (request log, GC, exit hooks)."""
    app = _factory(config)
    prepare(app)
    return app
