"""Build the gRPC server: the inference service, health, reflection, interceptors and limits.

``create_server(plane, config, host=..., port=...)`` binds but does not start;
``iris-service serve --grpc-port`` passes the REST app's data plane (one set of
models, one micro-batcher, one registry for both transports) and its metrics
registry (so ``/metrics`` shows the gRPC series). A front-end of its own builds
the plane as ``predict-file`` does: ``DataPlane.start(model_sources(config), ...)``.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2
from prometheus_client import CollectorRegistry

from ..serving import DataPlane
from ..serving.payload_log import PayloadLog, PayloadLogSettings, dropped_counter
from .auth import AuthInterceptor, AuthSettings
from .health import ModelHealth
from .observe import GrpcMetrics, ObserveInterceptor
from .proto import inference_pb2 as pb
from .proto import inference_pb2_grpc as pb_grpc
from .servicer import InferenceServicer

#: Streams one connection may hold open at once, as a share of GRPC_MAX_CONCURRENT_RPCS: a client
#: opening hundreds of streams waits for its own, and the other connections keep their slots.
STREAMS_PER_CONNECTION_SHARE = 4
#: Threads serving calls when GRPC_THREADS is null, with BATCHING off. Measured beside each other
#: (V2 row over gRPC, 16 concurrent callers, one process, three alternating rounds): 2 threads
#: answered 1.2-1.3x the calls of 8 (808 / 773 / 1,241 against 610 / 600 / 1,053 a second), 4 in
#: between. A handler only computes (grpcio's core reads and writes the messages), so more threads
#: only queue on the GIL; not 1, so one 10,000-row batch does not stall every other call.
THREADS = 2
#: With BATCHING on or auto: the micro-batcher gathers calls in flight at once, one per thread.
THREADS_BATCHING = 4
_POOL_LOCK = threading.Lock()
_MAX_C_INT = 2**31 - 1


def default_threads(config: Mapping[str, Any]) -> int:
    """``THREADS``, or ``THREADS_BATCHING`` when the configured ``BATCHING`` gathers calls."""
    from ..runtime.batch_policy import BatchingSettings

    return THREADS if BatchingSettings.mode_of(config) == "off" else THREADS_BATCHING


@dataclass(frozen=True)
class GrpcSettings:
    """The server's settings, read once from a checked config (``settings.load_settings``)."""

    threads: int = THREADS
    max_message_bytes: int = 16 * 1024 * 1024
    max_concurrent_rpcs: int = 64
    auth: AuthSettings = field(default_factory=AuthSettings)
    log_format: str = "json"
    log_level: int = logging.INFO

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GrpcSettings:
        limit = config.get("GRPC_MAX_MESSAGE_BYTES") or config.get("MAX_CONTENT_LENGTH")
        # No MAX_CONTENT_LENGTH means no limit, as REST; grpcio's limits are C ints (-1: none).
        limit = min(int(limit), _MAX_C_INT) if limit else -1
        level = logging.getLevelName(str(config.get("LOG_LEVEL", "INFO")).upper())
        return cls(
            threads=int(config.get("GRPC_THREADS") or default_threads(config)),
            max_message_bytes=limit,
            max_concurrent_rpcs=int(config.get("GRPC_MAX_CONCURRENT_RPCS", 64)),
            auth=AuthSettings(
                api_keys=tuple(config.get("API_KEYS") or ()),
                admin_token=config.get("ADMIN_TOKEN") or None,
                protect_probes=bool(config.get("API_KEYS_PROTECT_PROBES", False)),
                protect_docs=bool(config.get("API_KEYS_PROTECT_DOCS", False)),
            ),
            log_format=str(config.get("LOG_FORMAT", "json")).lower(),
            log_level=level if isinstance(level, int) else logging.INFO,
        )

    def options(self, reuse_port: bool = False) -> list[tuple[str, int]]:
        """grpcio channel arguments: the message limit, streams per connection, whether the port is shared.

        grpcio sets SO_REUSEPORT by default on Linux: a second server on a port in
        use would bind silently and take part of the connections, so one process
        owns its port, unless ``reuse_port``: gunicorn's workers each bind the same
        one and the kernel spreads connections over them.
        """
        return [
            # Larger messages are refused by grpcio itself with RESOURCE_EXHAUSTED, before decoding.
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_concurrent_streams", max(1, self.max_concurrent_rpcs // STREAMS_PER_CONNECTION_SHARE)),
            ("grpc.so_reuseport", int(reuse_port)),
        ]


class GrpcServer:
    """A bound grpcio server and its health service; ``stop`` drains like waitress's SIGTERM."""

    def __init__(self, server: grpc.Server, port: int, health: ModelHealth, threads: int,
                 payload_log: PayloadLog | None = None) -> None:
        self.server = server
        self.port = port
        self.health = health
        self.threads = threads
        #: The payload log this server made for itself (None: off, or the REST app's): close it after ``stop``.
        self.payload_log = payload_log

    def start(self) -> None:
        self.server.start()

    def stop(self, grace: float | None) -> threading.Event:
        """Refuse new calls, let those in flight finish for ``grace`` seconds; set when stopped.

        Health turns NOT_SERVING first, so a probe sees the drain.
        """
        self.health.enter_graceful_shutdown()
        return self.server.stop(grace)


def create_server(
    plane: DataPlane,
    config: Mapping[str, Any],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    registry: CollectorRegistry | None = None,
    tracer: Any = None,
    reuse_port: bool = False,
    payload_log: PayloadLog | None = None,
) -> GrpcServer:
    """Bind a gRPC server for ``plane`` on ``host:port`` (0: any free port); raises ``OSError`` if it cannot.

    ``tracer`` (the REST app's, with ``TRACING_ENABLED``) makes a span of each
    call; ``reuse_port`` lets several processes bind the same port. ``payload_log``: the
    REST app's, so both transports share one queue and writer; without it, ``PAYLOAD_LOG``
    in ``config`` gets a log of its own (its drops counted in ``registry``).
    """
    settings = GrpcSettings.from_config(config)
    metrics = GrpcMetrics(registry)
    own_log = None
    if payload_log is None:
        payload_settings = PayloadLogSettings.from_config(config)
        if payload_settings is not None:
            payload_log = own_log = PayloadLog(payload_settings, dropped_counter(metrics.registry))
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="iris-grpc"),
        # The first is outermost: a call refused for its credentials still gets an id, a line, a count.
        interceptors=[ObserveInterceptor(metrics, settings.log_format, settings.log_level, tracer, payload_log),
                      AuthInterceptor(settings.auth)],
        options=settings.options(reuse_port),
        # Beyond this many calls at once grpcio answers RESOURCE_EXHAUSTED instead of queueing forever.
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    health = ModelHealth(plane)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(plane, health), server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = (
        pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server, pool=_reflection_pool())
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio raises when the address cannot be bound
        raise OSError(f"cannot bind {address}: {exc}") from None
    if not bound:
        raise OSError(f"cannot bind {address}")
    return GrpcServer(server, bound, health, settings.threads, own_log)


def _reflection_pool() -> Any:
    """Our private pool, with the health and reflection files added so reflection describes all three.

    Reflection reads one pool; ours is not protobuf's default one (see ``proto/__init__``).
    """
    with _POOL_LOCK:
        for module in (health_pb2, reflection_pb2):
            try:
                pb.POOL.FindFileByName(module.DESCRIPTOR.name)
            except KeyError:
                pb.POOL.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    return pb.POOL
