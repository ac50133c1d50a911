"""Our flask-smorest Api and Blueprint: strict JSON bodies, thin decorators, one declaration per blueprint.

webargs' default JSON loader silently treats a non-JSON content type as an
empty body and uses the standard library parser; ours refuses the wrong media
type (415) and any charset but UTF-8 (415: orjson reads UTF-8 only, and a
Latin-1 body read as UTF-8 would be refused as malformed or, worse, misread),
parses with orjson (which also rejects NaN/Infinity literals) and names what is
wrong with a malformed body (400). Each blueprint declares once its error style
and its protocol's input error (whose status invalid bodies get), and how its
bodies are read when they are not plain JSON.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import wraps
from typing import Any

import flask
import flask_smorest
import orjson
from flask_smorest.utils import (
    resolve_schema_instance,
    set_status_and_headers_in_response,
    unpack_tuple_response,
)
from marshmallow import Schema, ValidationError
from webargs.flaskparser import FlaskParser, abort
from werkzeug.wrappers import Response

from ..errors import BadRequest, IrisServiceError, UnsupportedMediaType
from .errors import NATIVE, register_blueprint_error_handlers
from .json import json_response
from .schemas.base import ErrorSchema, PlainErrorSchema

#: What an error status means on every route that documents it without saying more.
ERROR_DESCRIPTIONS = {
    400: "Malformed or invalid body",
    401: "Missing or wrong token",
    404: "No such model",
    409: "The artifact failed verification",
    413: "Body larger than MAX_CONTENT_LENGTH",
    415: "Body is not application/json",
    503: "Model not loaded",
}
#: Reads a request's body into what the schema loads (plain JSON by default).
BodyLoader = Callable[[flask.Request], Any]
#: Charsets a JSON body may declare: UTF-8, and ASCII, which is a subset of it (RFC 8259 8.1).
JSON_CHARSETS = frozenset({"utf-8", "us-ascii"})


class JSONParser(FlaskParser):
    """webargs parser whose JSON location is strict and fast.

    ``validation_status`` replaces webargs' 422 for invalid bodies; ``load_body``
    reads bodies that are more than plain JSON (CSV, V2's binary tensors).
    """

    def __init__(self, *args: Any, validation_status: int | None = None, load_body: BodyLoader | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if validation_status is not None:
            self.DEFAULT_VALIDATION_STATUS = validation_status
        self._load_body = load_body or parse_json_body

    def load_json(self, req: flask.Request, schema: Any) -> Any:
        return self._load_body(req)

    def use_args(self, argmap: Any, *args: Any, **kwargs: Any) -> Any:
        """Decorate a view, instantiating a schema class once rather than per request.

        webargs builds a new instance of a schema class on every request (~40 µs
        of field copying for ours); our schemas keep no per-request state, so one
        instance per view serves every request and thread.
        """
        if isinstance(argmap, type) and issubclass(argmap, Schema):
            argmap = argmap()
        return super().use_args(argmap, *args, **kwargs)

    def parse_json_args(self, schema: Schema, req: flask.Request) -> Any:
        """What ``parse(schema, req, location="json")`` returns or raises, without its dispatch.

        webargs' ``parse`` resolves the schema, the location's loader, ``unknown`` and
        validators on every call; for a JSON body with none of those options the
        answer is always: load the body, ``schema.load`` it (webargs passes no
        ``unknown`` for JSON), and report a ``ValidationError`` through webargs' own
        error path (messages keyed by ``"json"``, the parser's error handler).
        """
        try:
            return schema.load(self.pre_load(self.load_json(req, schema), schema=schema, req=req, location="json"))
        except ValidationError as error:
            self._on_validation_error(error, req, schema, "json", error_status_code=None, error_headers=None)
            raise ValueError("_on_validation_error did not raise") from error


def parse_json_body(req: flask.Request) -> Any:
    """The request's JSON body, or a 4xx domain error saying what is wrong."""
    if not req.is_json:
        raise UnsupportedMediaType(
            f"Send the body as application/json (got {req.mimetype or 'no content type'})."
        )
    # The raw header first: most clients declare no charset, and parsing it costs more.
    if "charset" in req.environ.get("CONTENT_TYPE", "").lower():
        charset = req.mimetype_params.get("charset")
        if charset is not None and charset.strip().lower() not in JSON_CHARSETS:
            raise UnsupportedMediaType(f"Send the JSON body as UTF-8 (got charset {charset[:40]!r}).")
    data = req.get_data(cache=True)
    if not data.strip():
        raise BadRequest("The request body is empty; send a JSON object.")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"Malformed JSON: {exc}",
            errors={"json": ["Invalid JSON body."]},
        ) from None


class Api(flask_smorest.Api):
    """flask-smorest Api documenting our error shape (with the request id)."""

    ERROR_SCHEMA = ErrorSchema


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest Blueprint: the strict JSON parser, and decorators without extra layers.

    flask-smorest documents each response with a decorator that also wraps the
    view: ``alt_response`` adds a layer that only calls through, ``response`` one
    that looks up the app context, stores the dump for ETags (which we do not
    use) and answers through ``jsonify``. On ``/predict`` those layers cost about
    as much as the prediction. Here ``alt_response`` only documents, and
    ``response`` keeps flask-smorest's documentation and semantics (tuples,
    ``Response`` passthrough, the schema's ``dump``) in one thin layer.
    ``arguments`` for a JSON body is one layer too, where flask-smorest and
    webargs stack two and dispatch generically per request (one layer saves
    ~5 µs of a ~150 µs ``/predict`` in-process); other locations and options
    keep webargs' way.
    """

    ARGUMENTS_PARSER = JSONParser()

    def __init__(
        self,
        *args: Any,
        error_style: str | None = None,
        error_schema: Any = None,
        input_error: type[IrisServiceError] | None = None,
        load_body: BodyLoader | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.error_style = error_style or NATIVE
        #: The schema ``errors`` documents: the route's error shape.
        self.error_schema = error_schema or (ErrorSchema if self.error_style == NATIVE else PlainErrorSchema)
        if input_error is not None or load_body is not None:
            status = input_error.status if input_error is not None else None
            self.ARGUMENTS_PARSER = JSONParser(validation_status=status, load_body=load_body)
        if error_style is not None:
            # A declared style: our JSON errors even when a host app mounts the blueprint.
            register_blueprint_error_handlers(self)

    def arguments(self, schema: Any, *, location: str = "json", **kwargs: Any) -> Callable[[Any], Any]:
        document = super().arguments(schema, location=location, **kwargs)
        # Options for webargs (unknown, validate, as_kwargs, error_status_code, ...) take its way.
        use_args_options = set(kwargs) - {"content_type", "required", "description", "example", "examples"}
        parser = self.ARGUMENTS_PARSER
        if location != "json" or use_args_options or not isinstance(parser, JSONParser):
            return document
        instance = resolve_schema_instance(schema)

        def decorator(func: Any) -> Any:
            def layer(*args: Any, **view_kwargs: Any) -> Any:
                # As webargs does: the parsed body goes after the other positional arguments.
                return func(*args, parser.parse_json_args(instance, flask.request._get_current_object()), **view_kwargs)

            return _documented_layer(document, func, layer)

        return decorator

    def errors(self, *statuses: int | tuple[int, str]) -> Callable[[Any], Any]:
        """Document error answers in the blueprint's error shape: ``(status, description)`` or a status alone.

        One line per view instead of one ``alt_response`` per status, with the
        descriptions every route shares (``ERROR_DESCRIPTIONS``) unless given.
        """
        documents = [
            self.alt_response(status, schema=self.error_schema, description=description)
            for status, description in (
                item if isinstance(item, tuple) else (item, ERROR_DESCRIPTIONS[item]) for item in statuses
            )
        ]

        def decorator(func: Any) -> Any:
            for document in documents:
                func = document(func)
            return func

        return decorator

    def alt_response(self, status_code: Any, response: Any = None, **kwargs: Any) -> Callable[[Any], Any]:
        document = super().alt_response(status_code, response, **kwargs)

        def decorator(func: Any) -> Any:
            func._apidoc = document(func)._apidoc
            return func

        return decorator

    def etag(self, obj: Any) -> Any:
        """Refused: flask-smorest computes ETags from the dump its own response layer stores."""
        raise NotImplementedError("iris_service.rest.blueprint.Blueprint answers without flask-smorest's ETag support")

    def response(self, status_code: Any, schema: Any = None, **kwargs: Any) -> Callable[[Any], Any]:
        document = super().response(status_code, schema, **kwargs)
        dump = None if schema is None else resolve_schema_instance(schema).dump
        status = int(status_code)

        def decorator(func: Any) -> Any:
            def layer(*args: Any, **view_kwargs: Any) -> Response:
                result = func(*args, **view_kwargs)
                headers = None
                if type(result) is tuple:
                    result, status_override, headers = unpack_tuple_response(result)
                else:
                    status_override = None
                if isinstance(result, Response):
                    set_status_and_headers_in_response(result, status_override, headers)
                    return result
                answer = json_response(result if dump is None else dump(result))
                answer.status_code = status
                if headers or status_override is not None:
                    set_status_and_headers_in_response(answer, status_override, headers)
                return answer

            return _documented_layer(document, func, layer)

        return decorator


def _documented_layer(document: Callable[[Any], Any], func: Any, layer: Callable[..., Any]) -> Any:
    """``layer`` as the view, wrapping ``func``, with the OpenAPI info flask-smorest's ``document`` made.

    Coroutine views keep flask-smorest's own layers, which know how to await them.
    """
    documented = document(func)
    if inspect.iscoroutinefunction(func):
        return documented
    wrapper = wraps(func)(layer)
    wrapper._apidoc = documented._apidoc  # type: ignore[attr-defined]
    return wrapper


__all__ = ["Api", "Blueprint", "JSONParser", "abort", "parse_json_body"]
