"""KServe's gRPC client (``kserve.InferenceGRPCClient``) on a live ``serve --grpc-port``: run by tests/test_grpc_kserve.py.

Not collected by the suite itself (its name does not start with ``test_``): KServe's
protobuf modules and tritonclient.grpc's register the same names (``inference.*``)
in protobuf's default pool, so these run in an interpreter of their own. The
client has no metadata call; KServe's own generated stub (the client's channel
code) asks for it.
"""
from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import KNOWN_ROWS, free_port, run_server, serve_args, server_env

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the SDK's own imports warn; nothing of ours is involved
    from kserve import InferenceGRPCClient, InferInput, InferRequest
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as kpb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as kpb_grpc
    from kserve.protocol.infer_type import RequestedOutput

ROWS = np.array([row for row, _, _ in KNOWN_ROWS])
CLASSES = [index for _, index, _ in KNOWN_ROWS]
MAX_ROWS = 20
pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def target(iris_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("kserve-grpc")
    http_port, grpc_port = free_port(), free_port()
    env = server_env(iris_artifact, folder, IRIS_SERVICE_MAX_BATCH_SIZE=str(MAX_ROWS))
    with run_server(serve_args(http_port, "--grpc-port", str(grpc_port)), env, http_port,
                    output=folder / "server.log"):
        yield f"127.0.0.1:{grpc_port}"


def run(target: str, call):
    """``call(client)`` on a fresh client inside its own event loop (the client is grpc.aio)."""
    async def main():
        client = InferenceGRPCClient(target, retries=0, timeout=10)
        try:
            return await call(client)
        finally:
            await client.close()

    return asyncio.run(main())


def rows_input(binary: bool, rows: np.ndarray = ROWS) -> InferInput:
    tensor = InferInput(name="input-0", shape=list(rows.shape), datatype="FP64")
    tensor.set_data_from_numpy(rows.astype(np.float64), binary_data=binary)
    return tensor


def test_liveness_and_readiness(target: str) -> None:
    async def call(client):
        return (await client.is_server_live(), await client.is_server_ready(), await client.is_model_ready("iris"))

    assert run(target, call) == (True, True, True)


@pytest.mark.parametrize("binary", [False, True], ids=["typed", "raw"])
def test_infer_typed_and_raw(target: str, binary: bool) -> None:
    request = InferRequest(model_name="iris", infer_inputs=[rows_input(binary)], request_id=f"kserve-grpc-{binary}",
                           request_outputs=[RequestedOutput("predict"), RequestedOutput("predict_proba")])

    async def call(client):
        return await client.infer(request)

    response = run(target, call)
    assert (response.model_name, response.model_version, response.id) == ("iris", "1", f"kserve-grpc-{binary}")
    outputs = {output.name: output.as_numpy() for output in response.outputs}
    assert outputs["predict"].tolist() == CLASSES
    assert outputs["predict_proba"].shape == (3, 3)
    assert outputs["predict_proba"].argmax(axis=1).tolist() == CLASSES


def test_metadata_through_kserves_stub(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = kpb_grpc.GRPCInferenceServiceStub(channel)
        model = stub.ModelMetadata(kpb.ModelMetadataRequest(name="iris"), timeout=10)
        server = stub.ServerMetadata(kpb.ServerMetadataRequest(), timeout=10)
    assert (model.name, list(model.versions), model.platform) == ("iris", ["1"], "sklearn_joblib")
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("input-0", "FP64", [-1, 4])]
    assert server.name == "iris-service" and list(server.extensions) == ["model_repository"]


def test_errors_arrive_as_status_codes_with_rests_message(target: str) -> None:
    too_many = InferRequest(model_name="iris", infer_inputs=[rows_input(True, np.zeros((MAX_ROWS + 1, 4)))])
    unknown = InferRequest(model_name="nope", infer_inputs=[rows_input(True)])

    async def call(client):
        errors = []
        for request in (too_many, unknown):
            try:
                await client.infer(request)
            except grpc.aio.AioRpcError as exc:
                errors.append((exc.code(), exc.details()))
        errors.append(await client.is_model_ready("iris"))  # the server still answers
        return errors

    assert run(target, call) == [
        (grpc.StatusCode.INVALID_ARGUMENT, f"At most {MAX_ROWS} rows per request; got {MAX_ROWS + 1}."),
        (grpc.StatusCode.NOT_FOUND, "No model named 'nope'; known models: iris."),
        True,
    ]
