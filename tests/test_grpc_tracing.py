"""Tracing over gRPC: one server span per call, parent of the data plane's decode, predict and encode spans.

The server is built as ``iris-service serve`` and the gunicorn workers build it
(``cli/grpc_app.grpc_server`` on a ``create_app`` app with ``TRACING_ENABLED``),
with an in-memory exporter in place of the deployment's.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import KNOWN_ROWS, create_app_for_test
from tritonclient.grpc import service_pb2 as tpb
from tritonclient.grpc import service_pb2_grpc as tpb_grpc

from iris_service.cli.grpc_app import grpc_server
from iris_service.rest.middleware import tracing as rest_tracing
from iris_service.rest.state import state_of

pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is not installed")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

ROWS = np.array([row for row, _, _ in KNOWN_ROWS])
INFER = "grpc /inference.GRPCInferenceService/ModelInfer"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def stub(iris_artifact: Path, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch,
         tmp_path: Path) -> Iterator[tpb_grpc.GRPCInferenceServiceStub]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # The provider the app would make without a global one (which can be set once per process).
    monkeypatch.setattr(rest_tracing, "_default_provider", lambda: provider)
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "TRACING_ENABLED": True, "MAX_BATCH_SIZE": 10})
    server = grpc_server(app, "127.0.0.1", 0)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = tpb_grpc.GRPCInferenceServiceStub(channel)
            stub.app = app  # for the tests that change what the data plane serves
            yield stub
    finally:
        server.stop(0).wait(10)


def infer(rows: np.ndarray, model: str = "iris") -> tpb.ModelInferRequest:
    tensor = tpb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=list(rows.shape))
    return tpb.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=[rows.astype("<f8").tobytes()])


def test_a_call_is_a_server_span_with_the_data_planes_steps_under_it(stub, exporter) -> None:
    stub.ModelInfer(infer(ROWS), metadata=(("x-request-id", "traced-1"),))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {INFER, "decode", "predict", "encode"}
    call = spans[INFER]
    assert call.kind == SpanKind.SERVER and call.status.status_code == StatusCode.UNSET
    assert dict(call.attributes) == {
        "rpc.system": "grpc", "rpc.service": "inference.GRPCInferenceService", "rpc.method": "ModelInfer",
        "rpc.grpc.status_code": 0, "iris.request_id": "traced-1", "iris.model": "iris", "iris.model_version": "1",
        "iris.rows": 3}
    for step in ("decode", "predict", "encode"):
        assert spans[step].parent.span_id == call.context.span_id
        assert spans[step].context.trace_id == call.context.trace_id


def test_an_incoming_traceparent_is_continued(stub, exporter) -> None:
    parent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    stub.ModelInfer(infer(ROWS), metadata=(("traceparent", parent),))
    [call] = [s for s in exporter.get_finished_spans() if s.name == INFER]
    assert f"{call.context.trace_id:032x}" == TRACE_ID
    assert f"{call.parent.span_id:016x}" == "00f067aa0ba902b7"


def test_refused_calls_carry_their_code_and_only_server_faults_are_errors(stub, exporter) -> None:
    with pytest.raises(grpc.RpcError) as bad:
        stub.ModelInfer(infer(np.zeros((11, 4))))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as unknown:
        stub.ModelInfer(infer(ROWS, model="nope"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    calls = [s for s in exporter.get_finished_spans() if s.name == INFER]
    assert [s.attributes["rpc.grpc.status_code"] for s in calls] == [3, 5]
    # A client's mistake leaves the status unset (OpenTelemetry's gRPC server convention), with no exception event.
    assert [s.status.status_code for s in calls] == [StatusCode.UNSET, StatusCode.UNSET]
    assert all(not s.events for s in calls)
    assert calls[0].attributes["iris.model"] == "iris" and "iris.model" not in calls[1].attributes


def test_a_model_not_loaded_marks_the_span_failed(stub, exporter) -> None:
    app = stub.app
    state_of(app).dataplane.unload("iris")
    with pytest.raises(grpc.RpcError) as unloaded:
        stub.ModelInfer(infer(ROWS))
    assert unloaded.value.code() == grpc.StatusCode.UNAVAILABLE
    [call] = [s for s in exporter.get_finished_spans() if s.name == INFER]
    assert call.attributes["rpc.grpc.status_code"] == 14
    assert (call.status.status_code, call.status.description) == (StatusCode.ERROR, "UNAVAILABLE")
