"""Request ids, one request log line, the metrics and the payload log of every gRPC call: the outermost interceptor.

The line has the REST line's fields (``rest/middleware/request_log``) with the
gRPC code name as ``status`` and the full method as ``method``, on the same
``iris_service.requests`` logger, so one log query finds both transports'
calls. ``x-request-id`` metadata is kept when it is a safe token (else a new
id is made) and sent back in the trailing metadata, refused calls included:
the auth interceptor runs inside this one. With a tracer each call is also a
server span (``tracing.py``).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import grpc
import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram

from ..serving.request_ids import request_id_for
from . import tracing

LOGGER_NAME = "iris_service.requests"
REQUEST_ID_KEY = "x-request-id"
#: As REST's latency buckets: small models answer in well under a millisecond.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Codes logged at ERROR, as REST logs its 5xx answers.
_ERROR_CODES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN,
                          grpc.StatusCode.DATA_LOSS})


@dataclass
class CallRecord:
    """What the servicer notes about the call it serves, for its log line."""

    request_id: str
    model: Any = None
    rows: int | None = None
    #: The answered ``InferResult``, for the payload log.
    result: Any = None


_CURRENT: ContextVar[CallRecord | None] = ContextVar("iris_grpc_call", default=None)


def current_call() -> CallRecord:
    """The record of the call this thread serves (a throwaway one outside an observed call)."""
    record = _CURRENT.get()
    return record if record is not None else CallRecord(request_id="")


class GrpcMetrics:
    """``iris_grpc_requests_total{method,code}`` and ``iris_grpc_request_duration_seconds{method}``.

    Registered in the registry given (the REST app's, so ``/metrics`` shows
    them) or in one of their own.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter("iris_grpc_requests", "gRPC calls handled, by method and status code.",
                                ("method", "code"), registry=self.registry)
        self.duration = Histogram("iris_grpc_request_duration_seconds",
                                  "Time from the call's start to its answer, in seconds.", ("method",),
                                  buckets=LATENCY_BUCKETS, registry=self.registry)


class ObserveInterceptor(grpc.ServerInterceptor):
    """Request id in and out, then one log line and the metrics when the call ends."""

    def __init__(self, metrics: GrpcMetrics, log_format: str = "json", level: int = logging.INFO,
                 tracer: Any = None, payload_log: Any = None) -> None:
        self.metrics = metrics
        self.payload_log = payload_log
        self.log_format = log_format
        self.level = level
        self.logger = logging.getLogger(LOGGER_NAME)
        self.tracer = tracer  # None: no spans (TRACING_ENABLED off)

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED
            return None
        if handler.unary_unary is None:
            # Streams (health Watch, reflection) pass as they are: wrapping one would turn
            # the health servicer's non-blocking Watch into one that holds a thread.
            return handler
        incoming = next((v for k, v in details.invocation_metadata or () if k == REQUEST_ID_KEY), "")
        metadata = details.invocation_metadata
        return handler._replace(unary_unary=self._unary(handler.unary_unary, details.method, incoming, metadata))

    def _unary(self, behavior: Callable[..., Any], method: str, incoming: str, metadata: Any) -> Callable[..., Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            record, start = self._begin(context, incoming)
            token = _CURRENT.set(record)
            failed = True
            with tracing.call_span(self.tracer, method, metadata) as span:
                try:
                    answer = behavior(request, context)
                    failed = False
                    return answer
                finally:
                    _CURRENT.reset(token)
                    tracing.finish(span, record, self._end(context, method, record, start, failed))

        return call

    def _begin(self, context: grpc.ServicerContext, incoming: str) -> tuple[CallRecord, float]:
        rid = request_id_for(incoming)
        context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
        return CallRecord(request_id=rid), time.perf_counter()

    def _end(self, context: grpc.ServicerContext, method: str, record: CallRecord, start: float,
             failed: bool) -> grpc.StatusCode:
        seconds = time.perf_counter() - start
        code = _code_of(context, failed)
        short = method.rpartition("/")[2]
        self.metrics.requests.labels(short, code.name).inc()
        self.metrics.duration.labels(short).observe(seconds)
        if self.payload_log is not None and record.result is not None and code is grpc.StatusCode.OK:
            self.payload_log.record(record.request_id, record.result)
        level = logging.ERROR if code in _ERROR_CODES else logging.INFO
        if level >= self.level and self.logger.isEnabledFor(level):
            self.logger.log(level, self._line(record, method, code, seconds, level, context))
        return code

    def _line(self, record: CallRecord, method: str, code: grpc.StatusCode, seconds: float, level: int,
              context: grpc.ServicerContext) -> str:
        model = record.model
        fields: dict[str, Any] = {
            "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": logging.getLevelName(level),
            "request_id": record.request_id,
            "method": method,
            "status": code.name,
            "duration_ms": round(seconds * 1000.0, 3),
            "model": model.name if model is not None else None,
            "model_version": model.version if model is not None else None,
            "batch_size": record.rows,
            "peer": context.peer(),
        }
        if self.log_format == "json":
            return orjson.dumps(fields).decode()
        line = (f"{fields['time']} {fields['level']} {fields['request_id']} {method} {code.name} "
                f"{fields['duration_ms']}ms peer={fields['peer']}")
        if model is not None:
            line += f" model={model.name}@{model.version} rows={record.rows}"
        return line


def _code_of(context: grpc.ServicerContext, failed: bool) -> grpc.StatusCode:
    """The code the call ended with: what the servicer aborted with, else OK (UNKNOWN if it raised)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
