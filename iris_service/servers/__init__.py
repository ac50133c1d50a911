"""The HTTP servers under our WSGI app: waitress with a graceful SIGTERM, and a gunicorn worker; both bound slow clients.

Any WSGI app works here; the CLI (``iris-service serve``) and ``gunicorn.conf.py`` use them.
"""
