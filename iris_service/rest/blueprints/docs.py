"""Swagger UI's assets, served from the swagger-ui-bundle wheel.

flask-smorest's ``/docs`` page loads Swagger UI from ``OPENAPI_SWAGGER_UI_URL``;
pointing it here keeps the page working with no internet access.
"""
from __future__ import annotations

from flask import Blueprint, Response, send_from_directory

blp = Blueprint("docs_assets", __name__)


@blp.route("/docs/assets/<path:filename>")
def asset(filename: str) -> Response:
    import swagger_ui_bundle

    return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename, max_age=86400)
