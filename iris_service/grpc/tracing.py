"""One OpenTelemetry server span per gRPC call, parent of the data plane's decode, predict and encode spans.

The REST app traces a request with Flask's instrumentation; gRPC has no such
hook here, so the observe interceptor opens the span itself with the REST
app's tracer (``TRACING_ENABLED``): one provider, one exporter, and the data
plane's child spans nest under whichever transport's span is current. An
incoming ``traceparent`` in the call's metadata is continued, as REST does
with the header. OpenTelemetry is imported only when a tracer is given.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc

#: Codes that mark a server span as failed (OpenTelemetry's gRPC conventions): the others are the
#: client's doing (a bad tensor, a wrong key) and leave the span's status unset.
SERVER_ERRORS = frozenset({
    grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS,
})


def span_name(method: str) -> str:
    """``grpc /inference.GRPCInferenceService/ModelInfer``: the transport, then the full method."""
    return f"grpc {method}"


@contextmanager
def call_span(tracer: Any, method: str, metadata: Iterable[tuple[str, Any]] | None) -> Iterator[Any]:
    """The call's span, current while it runs (None without a tracer).

    Exceptions are not recorded: ``context.abort`` raises one for every refused
    call, and its traceback would only repeat the status set by ``finish``.
    """
    if tracer is None:
        yield None
        return
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
    service, _, name = method.lstrip("/").partition("/")
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
    with tracer.start_as_current_span(span_name(method), context=extract(carrier), kind=SpanKind.SERVER,
                                      attributes=attributes, record_exception=False,
                                      set_status_on_exception=False) as span:
        yield span


def finish(span: Any, record: Any, code: grpc.StatusCode) -> None:
    """Name what the call served on its span: model, version, rows, request id and status code.

    ``record`` is the observe interceptor's ``CallRecord`` (not imported: observe imports this module).
    """
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("rpc.grpc.status_code", code.value[0])
    span.set_attribute("iris.request_id", record.request_id)
    if record.model is not None:
        span.set_attribute("iris.model", record.model.name)
        span.set_attribute("iris.model_version", record.model.version)
    if record.rows is not None:
        span.set_attribute("iris.rows", record.rows)
    if code in SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, code.name))
