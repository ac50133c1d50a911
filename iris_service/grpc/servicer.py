"""``inference.GRPCInferenceService`` on a ``DataPlane``: what REST V2 answers, as protobuf messages.

Every method goes through ``_answers``: a domain error becomes its status code
and message (``status.py``), anything else INTERNAL with a generic line and the
traceback in the server's log. Inference runs as REST's does: the model is
looked up (and noted for the log line) before decoding, then ``DataPlane.run``
applies the row limit, range policy, micro-batching and finite check.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from ..errors import BadRequest, IrisServiceError, ModelNotReady
from ..protocols import v2
from ..serving import DataPlane
from ..version import __version__
from . import convert
from .health import ModelHealth
from .observe import current_call
from .proto import inference_pb2 as pb
from .proto import inference_pb2_grpc as pb_grpc
from .status import status_of

log = logging.getLogger("iris_service.grpc")

SERVER_NAME = "iris-service"
#: The protocol extensions served over gRPC (raw tensors need no extension here).
EXTENSIONS = ("model_repository",)

Method = TypeVar("Method", bound=Callable[..., Any])


def _answers(method: Method) -> Method:
    """Run an RPC; abort with the status its error maps to, never UNKNOWN, never a traceback."""

    @functools.wraps(method)
    def call(self: InferenceServicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except IrisServiceError as exc:
            code, message = status_of(exc)
        except Exception:
            log.exception("gRPC %s failed", method.__name__)
            code, message = status_of(RuntimeError())
        context.abort(code, message)

    return call  # type: ignore[return-value]


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The Open Inference Protocol's RPCs, each a thin call into the data plane."""

    def __init__(self, plane: DataPlane, health: ModelHealth | None = None) -> None:
        self.plane = plane
        self.health = health

    @_answers
    def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    @_answers
    def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.plane.ready())

    @_answers
    def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Ready or not for a configured model (not loaded: false); NOT_FOUND for an unknown one."""
        try:
            self.plane.model(_name(request.name, "name"), request.version or None)
        except ModelNotReady:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @_answers
    def ServerMetadata(self, request: pb.ServerMetadataRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=list(EXTENSIONS))

    @_answers
    def ModelMetadata(self, request: pb.ModelMetadataRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        name = _name(request.name, "name")
        model = self.plane.model(name, request.version or None)
        return convert.model_metadata(v2.model_metadata(model, self.plane.versions(name)))

    @_answers
    def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        record = current_call()
        model = self.plane.model(_name(request.model_name, "model_name"), request.model_version or None)
        record.model = model
        body, raw = convert.infer_request(request, model, self.plane.limits)
        result = self.plane.run(model, body, v2)
        record.rows, record.result = result.rows, result
        return convert.infer_response(result.answer, raw)

    @_answers
    def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        index = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(models=[
            index(name=name, version=s["version"] or "", state=s["state"] or "", reason=s["reason"] or "")
            for name, s in self.plane.status().items()
            if not request.ready or s["state"] == "READY"
        ])

    @_answers
    def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Load, verify and swap in a model; on failure the old one keeps serving (FAILED_PRECONDITION)."""
        name = _repository_model(request)
        try:
            model = self.plane.load(name)
        finally:
            self._refresh_health()
        return pb.RepositoryModelLoadResponse(model_name=model.name, isLoaded=True)

    @_answers
    def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Stop serving a model until it is loaded again: its calls answer UNAVAILABLE."""
        name = _repository_model(request)
        self.plane.unload(name)
        self._refresh_health()
        return pb.RepositoryModelUnloadResponse(model_name=name, isUnloaded=True)

    def _refresh_health(self) -> None:
        # Watchers learn of the change now, not at the next Check.
        if self.health is not None:
            self.health.refresh()


def _name(value: str, field: str) -> str:
    if not value:
        raise BadRequest(f"Give the model's name in {field!r}.")
    return value


#: Parameters tritonclient sends on every unload; a model here has no dependents to unload.
_HARMLESS_PARAMETERS = frozenset({"unload_dependents"})


def _repository_model(request: Any) -> str:
    """The model a load or unload names: Triton's ``model_name``, or field 1 as KServe's clients send it.

    A config or files sent with a load would be ignored, so they are refused:
    the artifact always comes from the model's configured source.
    """
    unsupported = sorted(set(request.parameters) - _HARMLESS_PARAMETERS)
    if unsupported:
        raise BadRequest(
            f"Parameter(s) {', '.join(unsupported)[:200]} are not supported: "
            "the model's artifact comes from its configured source."
        )
    return _name(request.model_name or request.repository_name, "model_name")
