"""Our Blueprint's decorators answer and document exactly as flask-smorest's do.

They exist to drop per-request layers (see ``parsing.Blueprint``); a view written
for flask-smorest must not notice the difference. The one intended difference is
the bytes: ours are written by orjson whatever the app's JSON provider (so numpy
arrays and fragments work in a host app), flask-smorest's by the app's provider.
``arguments`` is compared with flask-smorest's own decorator using the same parser
(our strict JSON loader), i.e. with webargs' generic ``parse`` path.
"""
from __future__ import annotations

import flask_smorest
import pytest
from flask import Flask, Response
from flask.views import MethodView
from marshmallow import INCLUDE, Schema, ValidationError, fields, validates_schema

from iris_service.rest.blueprint import Blueprint, JSONParser
from iris_service.rest.errors import register_error_handlers


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


class Point(Schema):
    x = fields.Float(required=True)
    y = fields.Float(load_default=0.0, data_key="why")

    @validates_schema
    def _not_origin(self, data: dict[str, float], **kwargs: object) -> None:
        if data.get("x") == 0 and data.get("y") == 0:
            raise ValidationError("Not the origin.", "_schema")


class Loose(Schema):
    class Meta:
        unknown = INCLUDE

    x = fields.Integer()


class Page(Schema):
    page = fields.Integer(load_default=1)


class WebargsBlueprint(flask_smorest.Blueprint):
    """flask-smorest's decorators (webargs' generic parse) with our JSON loader."""

    ARGUMENTS_PARSER = JSONParser()


def _arguments_app(blueprint_class: type[flask_smorest.Blueprint]) -> Flask:
    app = Flask(f"arguments_{blueprint_class.__name__}")
    app.config.update(API_TITLE="t", API_VERSION="1", OPENAPI_VERSION="3.0.3", OPENAPI_URL_PREFIX="/")
    register_error_handlers(app)
    api = flask_smorest.Api(app)
    blp = blueprint_class("args", __name__)

    @blp.route("/point", methods=["POST"])
    @blp.arguments(Point, description="A point", example={"x": 1.0, "why": 2.0})
    @blp.response(200)
    def point(body: dict[str, float]) -> dict[str, float]:
        return body

    @blp.route("/loose", methods=["POST"])
    @blp.arguments(Loose())
    @blp.response(200)
    def loose(body: dict[str, object]) -> dict[str, object]:
        return body

    @blp.route("/stacked/<int:item>", methods=["POST"])
    @blp.arguments(Point)
    @blp.arguments(Page, location="query")
    @blp.response(200)
    def stacked(body: dict[str, float], query: dict[str, int], item: int) -> dict[str, object]:
        return {"body": body, "query": query, "item": item}

    @blp.route("/options", methods=["POST"])
    @blp.arguments(Point, error_status_code=400, unknown="exclude")
    @blp.response(200)
    def options(body: dict[str, float]) -> dict[str, float]:
        return body

    @blp.route("/method")
    class Method(MethodView):
        @blp.arguments(Point)
        @blp.response(201)
        def put(self, body: dict[str, float]) -> dict[str, object]:
            return {"kind": type(self).__name__, "body": body}

    api.register_blueprint(blp)
    return app


ARGUMENT_REQUESTS = [
    ("POST", "/point", {"json": {"x": 1.5, "why": 2}}),
    ("POST", "/point", {"json": {"x": 1.5}}),  # load_default
    ("POST", "/point", {"json": {"why": 2}}),  # required field missing
    ("POST", "/point", {"json": {"x": "one"}}),  # wrong type
    ("POST", "/point", {"json": {"x": 1, "z": 3}}),  # unknown field: RAISE, the schema's default
    ("POST", "/point", {"json": {"x": 0, "why": 0}}),  # schema validator
    ("POST", "/point", {"json": [1, 2]}),  # not an object
    ("POST", "/point", {"data": "{", "content_type": "application/json"}),  # malformed: 400
    ("POST", "/point", {"data": "", "content_type": "application/json"}),  # empty: 400
    ("POST", "/point", {"data": "x=1", "content_type": "application/x-www-form-urlencoded"}),  # 415
    ("POST", "/loose", {"json": {"x": 1, "extra": [1]}}),  # Meta.unknown = INCLUDE is honoured
    ("POST", "/stacked/7?page=3", {"json": {"x": 1}}),
    ("POST", "/stacked/7?page=three", {"json": {"x": 1}}),  # the query location refuses
    ("POST", "/stacked/7", {"json": {"x": "bad"}}),
    ("POST", "/options", {"json": {"x": 1, "z": 3}}),  # webargs options: unknown=exclude
    ("POST", "/options", {"json": {"x": "bad"}}),  # and error_status_code=400
    ("PUT", "/method", {"json": {"x": 2}}),
    ("PUT", "/method", {"json": {}}),
]


def _arguments_answer(app: Flask, method: str, path: str, options: dict[str, object]) -> tuple[int, object]:
    response = app.test_client().open(path, method=method, **options)
    return response.status_code, response.get_json() if response.is_json else response.get_data()


@pytest.mark.parametrize(("method", "path", "options"), ARGUMENT_REQUESTS)
def test_arguments_answer_as_webargs_parse_does(method: str, path: str, options: dict[str, object]) -> None:
    ours = _arguments_answer(_arguments_app(Blueprint), method, path, options)
    theirs = _arguments_answer(_arguments_app(WebargsBlueprint), method, path, options)
    assert ours == theirs


def test_the_arguments_answers_themselves() -> None:
    app = _arguments_app(Blueprint)
    assert _arguments_answer(app, "POST", "/point", {"json": {"x": 1.5}}) == (200, {"x": 1.5, "y": 0.0})
    status, body = _arguments_answer(app, "POST", "/point", {"json": {"x": "one", "z": 1}})
    assert status == 422
    assert body["errors"] == {"json": {"x": ["Not a valid number."], "z": ["Unknown field."]}}
    assert _arguments_answer(app, "POST", "/point", {"json": {"x": 0, "why": 0}})[1]["errors"] == {
        "json": {"_schema": ["Not the origin."]}
    }
    assert _arguments_answer(app, "POST", "/point", {"data": "{", "content_type": "application/json"})[0] == 400
    assert _arguments_answer(app, "POST", "/point", {"data": "x", "content_type": "text/plain"})[0] == 415
    assert _arguments_answer(app, "POST", "/stacked/7?page=3", {"json": {"x": 1}}) == (
        200,
        {"body": {"x": 1.0, "y": 0.0}, "query": {"page": 3}, "item": 7},
    )
    assert _arguments_answer(app, "POST", "/stacked/7?page=x", {"json": {"x": 1}})[1]["errors"] == {
        "query": {"page": ["Not a valid integer."]}
    }
    assert _arguments_answer(app, "POST", "/options", {"json": {"x": 1, "z": 3}}) == (200, {"x": 1.0, "y": 0.0})
    assert _arguments_answer(app, "POST", "/options", {"json": {"x": "bad"}})[0] == 400
    assert _arguments_answer(app, "PUT", "/method", {"json": {"x": 2}}) == (
        201,
        {"kind": "Method", "body": {"x": 2.0, "y": 0.0}},
    )


def test_arguments_document_as_flask_smorest_does() -> None:
    ours = _arguments_app(Blueprint).test_client().get("/openapi.json").get_json()
    theirs = _arguments_app(WebargsBlueprint).test_client().get("/openapi.json").get_json()
    assert ours["paths"] == theirs["paths"]
    assert ours["components"] == theirs["components"]
    body = ours["paths"]["/point"]["post"]["requestBody"]
    assert body["description"] == "A point"
    assert body["content"]["application/json"]["example"] == {"x": 1.0, "why": 2.0}
    assert "422" in ours["paths"]["/point"]["post"]["responses"]


def test_a_json_body_argument_is_one_layer_over_the_response_layer() -> None:
    app = _arguments_app(Blueprint)
    view = app.view_functions["args.point"]
    response_layer = view.__wrapped__
    assert response_layer.__wrapped__.__name__ == "point"
    assert not hasattr(response_layer.__wrapped__, "__wrapped__")
    # Other locations and webargs options keep webargs' own layers.
    assert hasattr(app.view_functions["args.options"].__wrapped__, "__wrapped__")


def test_a_parser_error_callback_still_decides_the_answer() -> None:
    """webargs lets a parser register its own error handler; the thin layer calls it too."""

    class Teapot(Exception):
        pass

    class Parser(JSONParser):
        pass

    parser = Parser()

    @parser.error_handler
    def _teapot(error, req, schema, *, error_status_code, error_headers):  # type: ignore[no-untyped-def]
        raise Teapot(error.messages)

    class TeapotBlueprint(Blueprint):
        ARGUMENTS_PARSER = parser

    app = _arguments_app(TeapotBlueprint)
    app.register_error_handler(Teapot, lambda exc: ({"teapot": exc.args[0]}, 418))
    assert _arguments_answer(app, "POST", "/point", {"json": {"x": "one"}}) == (
        418,
        {"teapot": {"json": {"x": ["Not a valid number."]}}},
    )
