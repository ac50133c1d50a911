"""The Open Inference Protocol (KServe V2, Triton, MLServer) over HTTP/REST.

Health, metadata, inference (JSON or Triton's binary tensor data extension),
and the model repository extension acting on our registry. Errors answer
``{"error": "..."}`` with 400 for bad requests, as the protocol specifies.
"""
from __future__ import annotations

from typing import Any

import flask
from flask import Response, g, request
from flask.views import MethodView

from ...errors import ModelNotReady, UnsupportedMediaType
from ...protocols import v2
from ...version import __version__
from ..blueprint import Blueprint, parse_json_body
from ..errors import PLAIN
from ..json import dumps as json_dumps
from ..schemas.v2 import (
    InferRequestSchema,
    InferResponseSchema,
    ModelMetadataSchema,
    ModelReadySchema,
    RepositoryActionSchema,
    RepositoryIndexRequestSchema,
    RepositoryModelSchema,
    ServerLiveSchema,
    ServerMetadataSchema,
    ServerReadySchema,
)
from ..state import dataplane, infer
from .admin import check_admin

#: Protocol extensions this server implements, as reported by ``GET /v2``.
EXTENSIONS = ("binary_tensor_data", "model_repository")
#: Views of the repository extension: they change what is served, so they need the admin token.
_ADMIN_VIEWS = frozenset({"RepositoryIndex", "RepositoryLoad", "RepositoryUnload"})
OCTET_STREAM = "application/octet-stream"
#: One instance each, shared by the view and the row lane (``rest/lane``): they hold no request state.
INFER_REQUEST_SCHEMA = InferRequestSchema()
INFER_RESPONSE_SCHEMA = InferResponseSchema()


def _load_body(req: flask.Request) -> Any:
    """JSON bodies, or a JSON header followed by binary tensors; 400 for anything invalid.

    The official Triton client sends binary requests, and JSON ones without a
    content type, so both are read here; other media types are refused (415).
    The body is split once: the binary tail waits on ``g`` for the view.
    """
    header_length = req.headers.get(v2.HEADER_LENGTH)
    data = req.get_data(cache=True)
    if not data.strip():
        return {}
    if header_length is None and req.is_json:
        return parse_json_body(req)
    if header_length is None and req.mimetype not in ("", OCTET_STREAM):
        raise UnsupportedMediaType(
            f"Send application/json, or a JSON header and binary tensors with {v2.HEADER_LENGTH} "
            f"(got {req.mimetype})."
        )
    header, g.v2_binary = v2.split_body(data, header_length)
    return v2.loads_header(header)


blp = Blueprint("v2", __name__, description="Open Inference Protocol (KServe V2, Triton, MLServer).",
                error_style=PLAIN, input_error=v2.INPUT_ERROR, load_body=_load_body)


@blp.before_request
def guard_repository() -> None:
    """Check the admin token before the body is even read, like ``/admin`` does."""
    if (request.endpoint or "").rpartition(".")[2] in _ADMIN_VIEWS:
        check_admin()


# The protocol's own OpenAPI document spells it /v2/; its prose and Triton's client say /v2.
@blp.route("/v2", endpoint="ServerMetadata")
@blp.route("/v2/", endpoint="ServerMetadataSlash")
class ServerMetadata(MethodView):
    @blp.response(200, ServerMetadataSchema)
    def get(self) -> dict[str, Any]:
        """Server metadata: name, version and the protocol extensions supported."""
        return {"name": "iris-service", "version": __version__, "extensions": list(EXTENSIONS)}


@blp.route("/v2/health/live")
class ServerLive(MethodView):
    @blp.response(200, ServerLiveSchema)
    def get(self) -> dict[str, Any]:
        """Server liveness: the process answers."""
        return {"live": True}


@blp.route("/v2/health/ready")
class ServerReady(MethodView):
    @blp.response(200, ServerReadySchema)
    @blp.errors((503, "A configured model is not loaded"))
    def get(self) -> dict[str, Any]:
        """Server readiness: every configured model is loaded."""
        failed = dataplane().unready()
        if failed:
            raise ModelNotReady(f"Not ready: model(s) {', '.join(failed)} not loaded.")
        return {"ready": True}


def _metadata(name: str, version: str | None) -> dict[str, Any]:
    models = dataplane()
    model = models.model(name, version)
    return v2.model_metadata(model, models.versions(name))


def _ready(name: str, version: str | None) -> dict[str, Any]:
    model = dataplane().model(name, version)
    return {"name": model.name, "ready": True}


def _infer(body: dict[str, Any], name: str, version: str | None) -> Any:
    result = infer(name, v2.InferRequest(body, g.get("v2_binary", b"")), v2, version)
    if not result.has_binary:
        return result.header
    body, header_length = binary_answer(result)
    response = Response(body, mimetype=OCTET_STREAM)
    response.headers[v2.HEADER_LENGTH] = header_length
    return response


def binary_answer(answer: v2.InferResponse) -> tuple[bytes, str]:
    """An answer with binary outputs: its JSON header and tensors, and the header's length to send."""
    header = json_dumps(answer.header)
    return header + answer.binary, str(len(header))


@blp.route("/v2/models/<name>", endpoint="ModelMetadata")
@blp.route("/v2/models/<name>/versions/<version>", endpoint="ModelVersionMetadata")
class ModelMetadata(MethodView):
    @blp.response(200, ModelMetadataSchema)
    @blp.errors((404, "No such model or version"), 503)
    def get(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Model metadata: versions, input and output tensors."""
        return _metadata(name, version)


@blp.route("/v2/models/<name>/ready", endpoint="ModelReady")
@blp.route("/v2/models/<name>/versions/<version>/ready", endpoint="ModelVersionReady")
class ModelReady(MethodView):
    @blp.response(200, ModelReadySchema)
    @blp.errors((404, "No such model or version"), 503)
    def get(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Model readiness: 200 when the model (or that version) is served."""
        return _ready(name, version)


@blp.route("/v2/models/<name>/infer", endpoint="Infer")
@blp.route("/v2/models/<name>/versions/<version>/infer", endpoint="InferVersion")
class Infer(MethodView):
    @blp.arguments(INFER_REQUEST_SCHEMA)
    @blp.response(200, INFER_RESPONSE_SCHEMA)
    # The binary tensor data extension answers raw bytes when outputs ask for them.
    @blp.doc(responses={"200": {"description": "OK", "content": {
        "application/json": {"schema": InferResponseSchema},
        OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}},
    }}})
    @blp.errors(
        (400, "Invalid request, shape, datatype or data, or more rows than MAX_BATCH_SIZE"),
        (404, "No such model or version"),
        413,
        (415, "Unsupported media type"),
        503,
    )
    def post(self, body: dict[str, Any], name: str, version: str | None = None) -> Any:
        """Run one Open Inference Protocol request.

        JSON, or (binary tensor data extension) a JSON header of
        `Inference-Header-Content-Length` bytes followed by raw little-endian tensors.
        """
        return _infer(body, name, version)


@blp.route("/v2/repository/index")
class RepositoryIndex(MethodView):
    @blp.arguments(RepositoryIndexRequestSchema)
    @blp.response(200, RepositoryModelSchema(many=True))
    @blp.errors(400, 401, (404, "No ADMIN_TOKEN configured"), 413, 415)
    def post(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """List the configured models with their state (admin token)."""
        listing = [{"name": name, **status} for name, status in dataplane().status().items()]
        if body.get("ready"):
            listing = [m for m in listing if m["state"] == "READY"]
        return listing


@blp.route("/v2/repository/models/<name>/load")
class RepositoryLoad(MethodView):
    @blp.response(200, RepositoryActionSchema)
    @blp.errors(401, (404, "No such model, or no ADMIN_TOKEN configured"), 409)
    def post(self, name: str) -> dict[str, Any]:
        """Load, verify and swap in a model (admin token); the old one serves on failure."""
        model = dataplane().load(name)
        return {"name": model.name, "version": model.version, "state": "READY"}


@blp.route("/v2/repository/models/<name>/unload")
class RepositoryUnload(MethodView):
    @blp.response(200, RepositoryActionSchema)
    @blp.errors(401, (404, "No such model, or no ADMIN_TOKEN configured"))
    def post(self, name: str) -> dict[str, Any]:
        """Stop serving a model (admin token) until it is loaded again."""
        dataplane().unload(name)
        return {"name": name, "version": None, "state": "UNAVAILABLE"}
