"""Our Blueprint's response decorators answer and document exactly as flask-smorest's do.

They exist to drop per-request layers (see ``parsing.Blueprint``); a view written
for flask-smorest must not notice the difference. The one intended difference is
the bytes: ours are written by orjson whatever the app's JSON provider (so numpy
arrays and fragments work in a host app), flask-smorest's by the app's provider.
"""
from __future__ import annotations

import flask_smorest
import pytest
from flask import Flask, Response
from marshmallow import Schema, fields

from iris_service.parsing import Blueprint


class Renamed(Schema):
    value = fields.Integer(data_key="answer")


def _app(blueprint_class: type[flask_smorest.Blueprint]) -> Flask:
    app = Flask(f"decorators_{blueprint_class.__module__}")
    app.config.update(API_TITLE="t", API_VERSION="1", OPENAPI_VERSION="3.0.3", OPENAPI_URL_PREFIX="/")
    api = flask_smorest.Api(app)
    blp = blueprint_class("views", __name__)

    @blp.route("/dumped")
    @blp.response(200, Renamed)
    @blp.alt_response(404, description="Nothing here")
    @blp.alt_response(409, schema=Renamed, description="Conflict")
    def dumped():
        return {"value": 1}

    @blp.route("/created", methods=["POST"])
    @blp.response(201, Renamed)
    def created():
        return {"value": 2}

    @blp.route("/tuple-status")
    @blp.response(200, Renamed)
    def tuple_status():
        return {"value": 3}, 202

    @blp.route("/tuple-headers")
    @blp.response(200, Renamed)
    def tuple_headers():
        return {"value": 4}, {"X-Extra": "yes"}

    @blp.route("/tuple-all")
    @blp.response(200, Renamed)
    def tuple_all():
        return {"value": 5}, 203, {"X-Extra": "all"}

    @blp.route("/passthrough")
    @blp.response(200, Renamed)
    def passthrough():
        return Response("plain", status=200, mimetype="text/plain")

    @blp.route("/passthrough-status")
    @blp.response(200, Renamed)
    def passthrough_status():
        return Response("plain", mimetype="text/plain"), 418, {"X-Tea": "1"}

    @blp.route("/raw")
    @blp.response(200)
    def raw():
        return [1, 2, 3]

    api.register_blueprint(blp)
    return app


PATHS = [
    ("GET", "/dumped"),
    ("POST", "/created"),
    ("GET", "/tuple-status"),
    ("GET", "/tuple-headers"),
    ("GET", "/tuple-all"),
    ("GET", "/passthrough"),
    ("GET", "/passthrough-status"),
    ("GET", "/raw"),
]


def _answer(app: Flask, method: str, path: str) -> tuple[int, object, str, str | None, str | None]:
    """Status, the parsed JSON (or the bytes of anything else), the type and two headers."""
    response = app.test_client().open(path, method=method)
    return (
        response.status_code,
        response.get_json() if response.is_json else response.get_data(),
        response.mimetype,
        response.headers.get("X-Extra"),
        response.headers.get("X-Tea"),
    )


@pytest.mark.parametrize(("method", "path"), PATHS)
def test_answers_are_those_of_flask_smorest(method: str, path: str) -> None:
    ours = _answer(_app(Blueprint), method, path)
    theirs = _answer(_app(flask_smorest.Blueprint), method, path)
    assert ours == theirs


def test_the_answers_themselves() -> None:
    app = _app(Blueprint)
    assert _answer(app, "GET", "/dumped")[:3] == (200, {"answer": 1}, "application/json")
    assert app.test_client().get("/dumped").get_data() == b'{"answer":1}'  # orjson's, not the app provider's
    assert _answer(app, "POST", "/created")[:2] == (201, {"answer": 2})
    assert _answer(app, "GET", "/tuple-status")[:2] == (202, {"answer": 3})
    assert _answer(app, "GET", "/tuple-headers")[3] == "yes"
    assert _answer(app, "GET", "/tuple-all")[::3] == (203, "all")
    assert _answer(app, "GET", "/passthrough-status") == (418, b"plain", "text/plain", None, "1")


def test_openapi_document_is_that_of_flask_smorest() -> None:
    ours = _app(Blueprint).test_client().get("/openapi.json").get_json()
    theirs = _app(flask_smorest.Blueprint).test_client().get("/openapi.json").get_json()
    assert ours["paths"] == theirs["paths"]
    responses = ours["paths"]["/dumped"]["get"]["responses"]
    assert set(responses) == {"200", "404", "409", "default"}
    assert responses["404"]["description"] == "Nothing here"


def test_alt_response_adds_no_layer_to_the_view() -> None:
    app = _app(Blueprint)
    view = app.view_functions["views.dumped"]
    # flask-smorest's MethodView-less route keeps the function; one layer: response.
    assert view.__wrapped__.__name__ == "dumped"
    assert not hasattr(view.__wrapped__, "__wrapped__")


def test_etag_support_is_refused_rather_than_silently_wrong() -> None:
    with pytest.raises(NotImplementedError, match="ETag"):
        Blueprint("etags", __name__).etag(lambda: None)
