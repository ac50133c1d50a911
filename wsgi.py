"""WSGI entry point: ``gunicorn wsgi:app`` or ``waitress-serve wsgi:app``.

The app plus what a server process needs once (request log writer, GC tuning,
batchers closed at exit): ``iris_service/cli/process.py``.
"""
from iris_service.cli.wsgi import create_app

app = create_app()
