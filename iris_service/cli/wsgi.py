"""The app as a WSGI server process runs it: ``create_app`` plus the process's one-time effects.

For servers that take an app factory or object: ``waitress-serve --call
iris_service.cli.wsgi:create_app``, and the repository's ``wsgi.py`` (gunicorn).
"""
from __future__ import annotations

from typing import Any

from ..rest.factory import create_app as _factory
from ..servers.wsgi_layers import ChunkedBodyLimit
from .process import prepare


def create_app(config: Any = None) -> Any:
    """``iris_service.create_app(config)``, then ``process.prepare`` (request log, GC, exit hooks).

    gunicorn hands a chunked body to the app with no length and says it ends
    where it ends (``wsgi.input_terminated``); Werkzeug then reads it up to
    ``MAX_CONTENT_LENGTH`` and parses that much instead of refusing it. The
    layer reads one byte past the limit and lets the app answer its 413.
    """
    app = _factory(config)
    prepare(app)
    limit = app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None:
        app.wsgi_app = ChunkedBodyLimit(app.wsgi_app, limit)
    return app
