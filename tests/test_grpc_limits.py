"""Bounded gRPC concurrency on a live ``serve --grpc-port``: streams held open by one client leave the others served.

A connection may hold ``GRPC_MAX_CONCURRENT_RPCS / 4`` streams (HTTP/2's
MAX_CONCURRENT_STREAMS): a client opening hundreds waits for its own, while the
server's other slots stay free for everyone else. Past ``GRPC_MAX_CONCURRENT_RPCS``
calls at once in all, a call is refused at once with RESOURCE_EXHAUSTED instead
of waiting for ever, and the server answers again once the streams close.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import KNOWN_ROWS
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_grpc import serve_grpc
from tritonclient.grpc import service_pb2 as tpb
from tritonclient.grpc import service_pb2_grpc as tpb_grpc

pytestmark = pytest.mark.server

ROWS = np.array([row for row, _, _ in KNOWN_ROWS])
CLASSES = [index for _, index, _ in KNOWN_ROWS]
#: A channel of its own: grpcio would otherwise share one connection between channels to one target.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def infer(stub: tpb_grpc.GRPCInferenceServiceStub) -> list[int]:
    tensor = tpb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=[3, 4])
    answer = stub.ModelInfer(tpb.ModelInferRequest(model_name="iris", inputs=[tensor],
                                                   raw_input_contents=[ROWS.astype("<f8").tobytes()]), timeout=20)
    return np.frombuffer(answer.raw_output_contents[0], dtype="<i8").tolist()


def watch(channel: grpc.Channel) -> Iterator[health_pb2.HealthCheckResponse]:
    """A health Watch stream: it stays open, holding one of its connection's streams, until cancelled."""
    return health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)


def test_hundreds_of_streams_from_one_client_leave_another_clients_calls_served(
        iris_artifact: Path, tmp_path: Path) -> None:
    with serve_grpc(iris_artifact, tmp_path) as (target, _base, output, proc):
        hostile = grpc.insecure_channel(target, options=OWN_CONNECTION)
        streams = []
        try:
            # 16 (64 // 4) open on the server, each answered before the next is opened...
            for _ in range(16):
                streams.append(watch(hostile))
                assert next(streams[-1]).status == health_pb2.HealthCheckResponse.SERVING
            # ... and hundreds more waiting on the client's side for a free stream of that connection.
            streams += [watch(hostile) for _ in range(284)]
            with grpc.insecure_channel(target, options=OWN_CONNECTION) as other:
                stub = tpb_grpc.GRPCInferenceServiceStub(other)
                assert all(infer(stub) == CLASSES for _ in range(50))
        finally:
            for stream in streams:
                stream.cancel()
            hostile.close()
        assert proc.poll() is None
    assert "Traceback" not in output.read_text(errors="replace")


def test_past_the_servers_limit_calls_are_refused_at_once_and_the_rest_answered(
        forest_artifact: Path, tmp_path: Path) -> None:
    """One thread and 2 calls at once: of 80 calls sent together on 8 connections, the surplus is refused."""
    settings = {"IRIS_SERVICE_GRPC_MAX_CONCURRENT_RPCS": "2", "IRIS_SERVICE_GRPC_THREADS": "1",
                "IRIS_SERVICE_GRPC_MAX_MESSAGE_BYTES": str(1 << 20),
                "IRIS_SERVICE_MAX_BATCH_SIZE": "5000"}
    rows = np.tile(ROWS, (1000, 1))  # 3,000 rows through 20 trees: long enough for the calls to overlap
    tensor = tpb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=list(rows.shape))
    request = tpb.ModelInferRequest(model_name="forest", inputs=[tensor], raw_input_contents=[rows.tobytes()])
    with serve_grpc(forest_artifact, tmp_path, **settings) as (target, _base, output, proc):
        channels = [grpc.insecure_channel(target, options=OWN_CONNECTION) for _ in range(8)]
        try:
            for channel in channels:  # connected first: a connection still being set up is not the point
                grpc.channel_ready_future(channel).result(timeout=30)
            stubs = [tpb_grpc.GRPCInferenceServiceStub(channel) for channel in channels]
            futures = [stub.ModelInfer.future(request, timeout=60, wait_for_ready=True)
                       for _ in range(10) for stub in stubs]
            codes, details = [], []
            for future in futures:
                try:
                    answer = future.result()
                    assert np.frombuffer(answer.raw_output_contents[0], dtype="<i8").tolist() == CLASSES * 1000
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as exc:
                    codes.append(exc.code())
                    details.append(exc.details())
        finally:
            for channel in channels:
                channel.close()
        # The surplus is refused by the RPC limit (RESOURCE_EXHAUSTED) or, when a client opened a stream
        # before it read the connection's 1-stream limit, by HTTP/2 itself: RST_STREAM REFUSED_STREAM
        # (code 7), which grpcio reports as UNAVAILABLE and which by HTTP/2's rules did no work. Never
        # anything else: no internal error, no deadline waited out.
        assert {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED} <= set(codes), set(details)
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED,
                              grpc.StatusCode.UNAVAILABLE}, set(details)
        assert all(detail == "Concurrent RPC limit exceeded!" or "error code 7" in detail
                   for detail in details), set(details)
        with grpc.insecure_channel(target, options=OWN_CONNECTION) as channel:
            answer = tpb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
            assert answer.model_name == "forest"
        assert proc.poll() is None
    assert "Traceback" not in output.read_text(errors="replace")
