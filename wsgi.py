"""WSGI entry point: ``gunicorn wsgi:app`` or ``waitress-serve wsgi:app``."""
from iris_service import create_app

app = create_app()
