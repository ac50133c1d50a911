"""The Open Inference Protocol over gRPC: a live ``iris-service serve --grpc-port`` and the real clients.

``tritonclient.grpc`` (its client, and its own protobuf stubs for typed
contents and hostile messages), the ``grpc.health.v1`` client and the
reflection client talk to a server that also serves REST, and every answer is
compared with REST V2's for the same rows: same bytes, same messages.
"""
from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import orjson
import pytest
import requests
import tritonclient.grpc as triton
from conftest import KNOWN_ROWS, ROOT, free_port, run_server, serve_args, server_env
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from tritonclient.grpc import service_pb2 as tpb
from tritonclient.grpc import service_pb2_grpc as tpb_grpc
from tritonclient.utils import InferenceServerException

from iris_service.errors import (
    ArtifactError,
    BadRequest,
    ConfigError,
    InvalidInput,
    IrisServiceError,
    ModelNotFound,
    ModelNotReady,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from iris_service.grpc import convert
from iris_service.grpc.proto import inference_pb2 as pb
from iris_service.grpc.status import status_of
from iris_service.protocols import Limits, v2
from iris_service.serving import DataPlane, ServingSettings, model_sources
from iris_service.settings import load_settings

pytestmark = pytest.mark.server

ADMIN = "grpc-admin-token"
KEY = "grpc-api-key"
MAX_ROWS = 50
MESSAGE_LIMIT = 65_536
FLOAT_ROWS = np.array([row for row, _, _ in KNOWN_ROWS])
WHOLE_ROWS = np.array([[5, 3, 1, 0], [7, 3, 5, 1], [6, 3, 6, 2]])
DATATYPES = ["FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]
#: What iris-service serve --grpc-port answers on, and the HTTP base URL of the same process.
Served = tuple[str, str, Path]


@contextlib.contextmanager
def serve_grpc(artifact: Path, folder: Path, **env: str) -> Iterator[tuple[str, str, Path, subprocess.Popen[bytes]]]:
    http_port, grpc_port = free_port(), free_port()
    output = folder / f"server-{grpc_port}.log"
    settings = {"IRIS_SERVICE_MAX_BATCH_SIZE": str(MAX_ROWS), "IRIS_SERVICE_GRPC_MAX_MESSAGE_BYTES": str(MESSAGE_LIMIT),
                "IRIS_SERVICE_ADMIN_TOKEN": ADMIN, **env}
    with run_server(serve_args(http_port, "--grpc-port", str(grpc_port)), server_env(artifact, folder, **settings),
                    http_port, output=output) as (base, proc):
        yield f"127.0.0.1:{grpc_port}", base, output, proc


@pytest.fixture(scope="module")
def served(iris_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("grpc")
    with serve_grpc(iris_artifact, folder) as (target, base, output, _proc):
        yield target, base, output


@pytest.fixture(scope="module")
def guarded(iris_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server with API keys on (and the admin token)."""
    folder = tmp_path_factory.mktemp("grpc-keys")
    with serve_grpc(iris_artifact, folder, IRIS_SERVICE_API_KEYS=KEY) as (target, base, output, _proc):
        yield target, base, output


@pytest.fixture
def client(served: Served) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(served[0]) as c:
        yield c


@pytest.fixture
def stub(served: Served) -> Iterator[tpb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(served[0]) as channel:
        yield tpb_grpc.GRPCInferenceServiceStub(channel)


def triton_infer(c: triton.InferenceServerClient, array: np.ndarray, datatype: str, **kwargs: object):
    tensor = triton.InferInput("input-0", list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    outputs = [triton.InferRequestedOutput("predict"), triton.InferRequestedOutput("predict_proba")]
    return c.infer("iris", [tensor], outputs=outputs, **kwargs)


def rest_infer(base: str, array: np.ndarray, datatype: str) -> tuple[bytes, bytes]:
    """REST V2 with the binary extension both ways: the raw bytes of predict and predict_proba."""
    raw = array.tobytes()
    header = orjson.dumps({"inputs": [{"name": "input-0", "shape": list(array.shape), "datatype": datatype,
                                       "parameters": {"binary_data_size": len(raw)}}],
                           "outputs": [{"name": "predict", "parameters": {"binary_data": True}},
                                       {"name": "predict_proba", "parameters": {"binary_data": True}}]})
    response = requests.post(f"{base}/v2/models/iris/infer", data=header + raw, timeout=10,
                             headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 200, response.text
    answer = orjson.loads(response.content[: int(response.headers["Inference-Header-Content-Length"])])
    sizes = [o["parameters"]["binary_data_size"] for o in answer["outputs"]]
    body = response.content[int(response.headers["Inference-Header-Content-Length"]):]
    return body[: sizes[0]], body[sizes[0]:]


def rest_error(base: str, header: dict[str, object]) -> str:
    response = requests.post(f"{base}/v2/models/iris/infer", json=header, timeout=10)
    assert response.status_code == 400, response.text
    return str(response.json()["error"])


def typed_request(datatype: str, array: np.ndarray, field: str) -> tpb.ModelInferRequest:
    tensor = tpb.ModelInferRequest.InferInputTensor(name="input-0", datatype=datatype, shape=list(array.shape))
    getattr(tensor.contents, field).extend(array.ravel().tolist())
    return tpb.ModelInferRequest(model_name="iris", id="typed-1", inputs=[tensor], outputs=[
        tpb.ModelInferRequest.InferRequestedOutputTensor(name="predict"),
        tpb.ModelInferRequest.InferRequestedOutputTensor(name="predict_proba")])


def error_of(call, *args: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args)
    return caught.value.code(), caught.value.details()


def raw_request(shape: list[int], raw: bytes, datatype: str = "FP64", name: str = "input-0") -> tpb.ModelInferRequest:
    tensor = tpb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    return tpb.ModelInferRequest(model_name="iris", inputs=[tensor], raw_input_contents=[raw])


# --- the service -----------------------------------------------------------------------------


def test_probes_and_metadata_with_the_triton_client(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
    assert client.is_model_ready("iris", "1") is True
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "iris-service" and server["extensions"] == ["model_repository"]
    model = client.get_model_metadata("iris", as_json=True)
    assert (model["name"], model["versions"], model["platform"]) == ("iris", ["1"], "sklearn_joblib")
    assert model["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": ["-1", "4"]}]
    assert [(o["name"], o["datatype"], o["shape"]) for o in model["outputs"]] == [
        ("predict", "INT64", ["-1"]), ("predict_proba", "FP64", ["-1", "3"])]


@pytest.mark.parametrize("datatype", DATATYPES)
def test_raw_tensors_answer_rest_v2_bit_for_bit(datatype: str, client, served: Served) -> None:
    rows = (FLOAT_ROWS if datatype.startswith("FP") else WHOLE_ROWS).astype(v2.DTYPES[datatype])
    result = triton_infer(client, rows, datatype, request_id="raw-1")
    predict, proba = rest_infer(served[1], rows, datatype)
    assert result.as_numpy("predict").tobytes() == predict
    assert result.as_numpy("predict_proba").tobytes() == proba
    assert result.get_response().id == "raw-1"
    if datatype.startswith("FP"):
        assert result.as_numpy("predict").tolist() == [label for _, label, _ in KNOWN_ROWS]


@pytest.mark.parametrize(("datatype", "field"), [
    ("FP32", "fp32_contents"), ("FP64", "fp64_contents"), ("INT8", "int_contents"), ("INT32", "int_contents"),
    ("INT64", "int64_contents"), ("UINT16", "uint_contents"), ("UINT64", "uint64_contents")])
def test_typed_contents_answer_typed_and_as_rest(datatype: str, field: str, stub, served: Served) -> None:
    rows = (FLOAT_ROWS if datatype.startswith("FP") else WHOLE_ROWS).astype(v2.DTYPES[datatype])
    answer = stub.ModelInfer(typed_request(datatype, rows, field))
    predict, proba = rest_infer(served[1], rows, datatype)
    assert not answer.raw_output_contents and answer.id == "typed-1"
    assert [(o.name, o.datatype, list(o.shape)) for o in answer.outputs] == [
        ("predict", "INT64", [3]), ("predict_proba", "FP64", [3, 3])]
    assert np.array(answer.outputs[0].contents.int64_contents, dtype="<i8").tobytes() == predict
    assert np.array(answer.outputs[1].contents.fp64_contents, dtype="<f8").tobytes() == proba


def test_the_request_id_is_echoed_logged_and_counted(client, served: Served) -> None:
    result = triton_infer(client, FLOAT_ROWS, "FP64", headers={"x-request-id": "grpc-req-7"})
    assert result.get_response().model_version == "1"
    with grpc.insecure_channel(served[0]) as channel:
        _, call = tpb_grpc.GRPCInferenceServiceStub(channel).ServerLive.with_call(
            tpb.ServerLiveRequest(), metadata=(("x-request-id", "live-8"),))
        assert ("x-request-id", "live-8") in call.trailing_metadata()
        with pytest.raises(grpc.RpcError) as caught:
            tpb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                raw_request([1, 4], b"\0" * 31), metadata=(("x-request-id", "bad-9"),))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ("x-request-id", "bad-9") in caught.value.trailing_metadata()
    deadline = time.monotonic() + 10
    while '"grpc-req-7"' not in served[2].read_text(errors="replace"):
        assert time.monotonic() < deadline, "no log line for the call"
        time.sleep(0.05)
    [line] = [orjson.loads(t) for t in served[2].read_text().splitlines() if '"grpc-req-7"' in t]
    assert set(line) == {"time", "level", "request_id", "method", "status", "duration_ms", "model",
                         "model_version", "batch_size", "peer"}
    assert {k: line[k] for k in ("method", "status", "model", "model_version", "batch_size")} == {
        "method": "/inference.GRPCInferenceService/ModelInfer", "status": "OK", "model": "iris",
        "model_version": "1", "batch_size": 3}
    scrape = requests.get(f"{served[1]}/metrics", timeout=10).text
    assert 'iris_grpc_requests_total{code="OK",method="ModelInfer"}' in scrape
    assert 'iris_grpc_requests_total{code="INVALID_ARGUMENT",method="ModelInfer"}' in scrape
    assert 'iris_grpc_request_duration_seconds_count{method="ModelInfer"}' in scrape


# --- errors ----------------------------------------------------------------------------------


def test_bad_tensors_are_invalid_argument_with_rests_messages(stub, client, served: Served) -> None:
    base = served[1]
    # Where REST's marshmallow schema answers first its message names the JSON field (json.inputs.0...);
    # gRPC's come from the V2 unit's own header checks, which REST runs after its schema.
    expected = {
        "FP128": f"Input 'input-0': datatype 'FP128' is not one of {', '.join(v2.DTYPES)}.",
        "BOOL": f"Input 'input-0': datatype 'BOOL' is not one of {', '.join(v2.DTYPES)}.",
    }
    for datatype, message in expected.items():
        assert error_of(stub.ModelInfer, raw_request([1, 4], b"\0" * 32, datatype)) == (
            grpc.StatusCode.INVALID_ARGUMENT, message)
    shape_message = "Input 'input-0': 'shape' must be a list of whole numbers >= 0."
    assert error_of(stub.ModelInfer, raw_request([-1, 4], b"\0" * 32)) == (grpc.StatusCode.INVALID_ARGUMENT, shape_message)
    huge = f"At most {MAX_ROWS} rows per request; got {2 ** 40}."
    assert error_of(stub.ModelInfer, raw_request([2 ** 40, 4], b"\0" * 32)) == (grpc.StatusCode.INVALID_ARGUMENT, huge)
    assert rest_error(base, {"inputs": [{"name": "input-0", "data": [0] * 4, "shape": [2 ** 40, 4],
                                         "datatype": "FP64"}]}) == huge
    code, details = error_of(stub.ModelInfer, raw_request([1, 4], b"\0" * 31))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT,
                               "Input 'input-0' of shape [1, 4] and datatype FP64 needs 32 bytes; "
                               "its raw_input_contents holds 31.")
    code, details = error_of(stub.ModelInfer, raw_request([1], b"\0" * 8, name="sepal_size"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("Unknown input(s): sepal_size.")
    with pytest.raises(InferenceServerException) as caught:
        triton_infer(client, np.zeros((MAX_ROWS + 1, 4)), "FP64")
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert caught.value.message() == f"At most {MAX_ROWS} rows per request; got {MAX_ROWS + 1}."
    assert client.is_server_live() and triton_infer(client, FLOAT_ROWS, "FP64").as_numpy("predict").size == 3


def test_unknown_models_oversized_messages_and_missing_names(stub, client) -> None:
    with pytest.raises(InferenceServerException) as caught:
        triton_infer(client, FLOAT_ROWS, "FP64", model_version="9")
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert caught.value.message() == "Model 'iris' serves version '1', not '9'."
    request = raw_request([1, 4], b"\0" * 32)
    request.model_name = "nope"
    assert error_of(stub.ModelInfer, request) == (grpc.StatusCode.NOT_FOUND, "No model named 'nope'; known models: iris.")
    assert error_of(stub.ModelMetadata, tpb.ModelMetadataRequest(name="nope"))[0] == grpc.StatusCode.NOT_FOUND
    request.model_name = ""
    assert error_of(stub.ModelInfer, request) == (grpc.StatusCode.INVALID_ARGUMENT, "Give the model's name in 'model_name'.")
    code, _ = error_of(stub.ModelInfer, raw_request([MAX_ROWS, 4], b"\0" * (MESSAGE_LIMIT + 1)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert client.is_server_ready()


# --- health, reflection, keys and the repository ---------------------------------------------


def test_the_health_service_answers_overall_and_per_model(served: Served) -> None:
    with grpc.insecure_channel(served[0]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "iris", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
        assert error_of(health.Check, health_pb2.HealthCheckRequest(service="nope"))[0] == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_services(served: Served) -> None:
    with grpc.insecure_channel(served[0]) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= set(database.get_services())
        from google.protobuf.descriptor_pool import DescriptorPool

        described = DescriptorPool(database).FindMessageTypeByName("inference.ModelInferRequest")
        assert described.fields_by_name["raw_input_contents"].number == 7


def test_api_keys_guard_inference_but_not_the_probes(guarded: Served) -> None:
    with triton.InferenceServerClient(guarded[0]) as c:
        assert c.is_server_live() and c.is_server_ready()
        with pytest.raises(InferenceServerException) as caught:
            triton_infer(c, FLOAT_ROWS, "FP64")
        assert (caught.value.status(), caught.value.message()) == (
            "StatusCode.UNAUTHENTICATED", "Missing or wrong bearer token.")
        for headers in ({"x-api-key": KEY}, {"authorization": f"Bearer {KEY}"}):
            assert triton_infer(c, FLOAT_ROWS, "FP64", headers=headers).as_numpy("predict").size == 3
        with pytest.raises(InferenceServerException) as caught:
            triton_infer(c, FLOAT_ROWS, "FP64", headers={"x-api-key": "wrong"})
        assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
    with grpc.insecure_channel(guarded[0]) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_the_repository_rpcs_take_only_the_admin_token_and_unload_for_both_transports(guarded: Served) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    with triton.InferenceServerClient(guarded[0]) as c:
        for headers in (None, {"x-api-key": KEY}, {"x-api-key": ADMIN}):
            with pytest.raises(InferenceServerException) as caught:
                c.unload_model("iris", headers=headers)
            assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
        index = c.get_model_repository_index(headers=admin, as_json=True)
        assert index["models"] == [{"name": "iris", "version": "1", "state": "READY"}]
        c.unload_model("iris", headers=admin)
        assert not c.is_model_ready("iris", headers={"x-api-key": KEY})
        with pytest.raises(InferenceServerException) as caught:
            triton_infer(c, FLOAT_ROWS, "FP64", headers={"x-api-key": KEY})
        assert (caught.value.status(), caught.value.message()) == (
            "StatusCode.UNAVAILABLE", "Model 'iris' is not loaded: unloaded.")
        rest = requests.get(f"{guarded[1]}/v2/health/ready", timeout=10)
        assert rest.status_code == 503
        with grpc.insecure_channel(guarded[0]) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "iris"):
                status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
                assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(InferenceServerException) as caught:
            c.load_model("iris", headers=admin, config='{"backend": "python"}')
        assert (caught.value.status(), caught.value.message()) == ("StatusCode.INVALID_ARGUMENT", (
            "Parameter(s) config are not supported: the model's artifact comes from its configured source."))
        c.load_model("iris", headers=admin)
        assert c.is_server_ready() and triton_infer(c, FLOAT_ROWS, "FP64", headers={"x-api-key": KEY})
        assert requests.get(f"{guarded[1]}/v2/health/ready", timeout=10).status_code == 200


def test_without_an_admin_token_the_repository_rpcs_are_unimplemented(iris_artifact, tmp_path) -> None:
    with serve_grpc(iris_artifact, tmp_path, IRIS_SERVICE_ADMIN_TOKEN="") as (target, _base, _output, _proc):
        with triton.InferenceServerClient(target) as c:
            with pytest.raises(InferenceServerException) as caught:
                c.unload_model("iris", headers={"authorization": "Bearer anything"})
            assert (caught.value.status(), caught.value.message()) == (
                "StatusCode.UNIMPLEMENTED", "The model repository RPCs are off: this server has no ADMIN_TOKEN.")
            assert c.is_model_ready("iris")


# --- serving ---------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_sigterm_drains_grpc_beside_http_and_exits_0(iris_artifact, tmp_path) -> None:
    with serve_grpc(iris_artifact, tmp_path) as (target, _base, output, proc):
        codes: list[str] = []
        sending = threading.Event()

        def traffic() -> None:
            with triton.InferenceServerClient(target) as c:
                for _ in range(2000):  # bounded: stops by itself once the server is gone
                    sending.set()
                    try:
                        triton_infer(c, FLOAT_ROWS, "FP64")
                        codes.append("OK")
                    except InferenceServerException as exc:
                        codes.append(str(exc.status()))
                        return

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        assert sending.wait(10)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        thread.join(timeout=30)
        assert not thread.is_alive()
    # Every call before the stop was answered; the first one after it is refused, UNAVAILABLE
    # (or CANCELLED when it reached grpc-core in the instant its shutdown began, before our code ran).
    assert codes[:-1] == ["OK"] * (len(codes) - 1) and len(codes) > 1
    assert codes[-1] in {"StatusCode.UNAVAILABLE", "StatusCode.CANCELLED"}, codes[-1]
    assert "Traceback" not in output.read_text(errors="replace")


def test_grpc_port_without_grpcio_says_what_to_install(iris_artifact, tmp_path) -> None:
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'grpc' or name.startswith('grpc.'): raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from iris_service.cli import main\n"
        "main(['serve', '--port', '0', '--grpc-port', '0'])\n"
    )
    env = {**server_env(iris_artifact, tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: --grpc-port needs grpcio: pip install 'iris-service[grpc]' (from a checkout: pip install -e '.[grpc]')"
    )


# --- without a server: the converters and the status table -----------------------------------


@pytest.fixture(scope="module")
def model(iris_artifact: Path, tmp_path_factory: pytest.TempPathFactory):
    config = load_settings({"ENV_NAME": "testing", "MODEL_PATH": str(iris_artifact)}, tmp_path_factory.mktemp("i"))
    return DataPlane.start(model_sources(config), ServingSettings.from_config(config)).model("iris")


@pytest.mark.parametrize(("error", "code"), [
    (BadRequest("x"), grpc.StatusCode.INVALID_ARGUMENT), (InvalidInput("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (UnsupportedMediaType("x"), grpc.StatusCode.INVALID_ARGUMENT), (Unauthorized("x"), grpc.StatusCode.UNAUTHENTICATED),
    (ModelNotFound("x"), grpc.StatusCode.NOT_FOUND), (ArtifactError("x"), grpc.StatusCode.FAILED_PRECONDITION),
    (PayloadTooLarge("x"), grpc.StatusCode.RESOURCE_EXHAUSTED), (ModelNotReady("x"), grpc.StatusCode.UNAVAILABLE)])
def test_domain_errors_keep_their_message_under_their_code(error: IrisServiceError, code: grpc.StatusCode) -> None:
    assert status_of(error) == (code, "x")


@pytest.mark.parametrize("error", [IrisServiceError("secret detail"), RuntimeError("boom /srv/models"),
                                   ConfigError("x"), KeyError("k")])
def test_anything_else_is_internal_with_a_generic_message(error: BaseException) -> None:
    assert status_of(error) == (grpc.StatusCode.INTERNAL, "Internal error.")


def _tensor(datatype: str, shape: list[int]) -> pb.ModelInferRequest.InferInputTensor:
    return pb.ModelInferRequest.InferInputTensor(name="input-0", datatype=datatype, shape=shape)


def test_typed_contents_become_the_bytes_a_raw_client_sends(model) -> None:
    rows = WHOLE_ROWS.astype(np.int16)
    typed = pb.ModelInferRequest(model_name="iris", id="t", inputs=[_tensor("INT16", [3, 4])])
    typed.inputs[0].contents.int_contents.extend(rows.ravel().tolist())
    raw = pb.ModelInferRequest(model_name="iris", id="t", inputs=[_tensor("INT16", [3, 4])],
                               raw_input_contents=[rows.tobytes()])
    (typed_body, typed_raw), (raw_body, raw_raw) = (convert.infer_request(m, model, Limits(10)) for m in (typed, raw))
    assert typed_body.binary == raw_body.binary == rows.tobytes() and (typed_raw, raw_raw) == (False, True)
    assert typed_body.header["inputs"] == raw_body.header["inputs"] == [
        {"name": "input-0", "datatype": "INT16", "shape": [3, 4], "parameters": {"binary_data_size": 24}}]
    # Outputs mirror the request: typed contents for typed inputs, raw buffers for raw ones.
    assert (typed_body.header["parameters"], raw_body.header["parameters"]) == (
        {"binary_data_output": False}, {"binary_data_output": True})
    assert typed_body.header["id"] == "t"


@pytest.mark.parametrize(("datatype", "field", "values", "message"), [
    ("INT8", "int_contents", [300, 0, 0, 0], "Input 'input-0': a value is out of range for INT8."),
    ("UINT8", "uint_contents", [256, 0, 0, 0], "Input 'input-0': a value is out of range for UINT8."),
    ("FP64", "fp32_contents", [1.0] * 4, "Input 'input-0' is FP64: its values go in contents.fp64_contents, not fp32_contents."),
    ("FP64", "fp64_contents", [1.0] * 3, "Input 'input-0' has shape [1, 4] (4 values) but its contents hold 3."),
    ("FP16", "fp32_contents", [1.0] * 4, "Input 'input-0' is FP16: send it as raw_input_contents (contents have no field for it)."),
])
def test_typed_contents_are_checked(model, datatype: str, field: str, values: list[float], message: str) -> None:
    request = pb.ModelInferRequest(model_name="iris", inputs=[_tensor(datatype, [1, 4])])
    getattr(request.inputs[0].contents, field).extend(values)
    with pytest.raises(BadRequest) as caught:
        convert.infer_request(request, model, Limits(10))
    assert caught.value.message == message


def test_raw_buffers_must_match_the_inputs(model) -> None:
    two = pb.ModelInferRequest(model_name="iris", inputs=[_tensor("FP64", [1, 4])], raw_input_contents=[b"", b""])
    with pytest.raises(BadRequest, match=r"^raw_input_contents holds 2 buffers for 1 inputs; send one per input"):
        convert.infer_request(two, model, Limits(10))
    neither = pb.ModelInferRequest(model_name="iris", inputs=[_tensor("FP64", [1, 4])])
    with pytest.raises(BadRequest, match=r"^Input 'input-0' has no contents and the request no raw_input_contents\.$"):
        convert.infer_request(neither, model, Limits(10))


def test_answers_convert_to_raw_buffers_or_typed_contents() -> None:
    header = {"id": "a", "model_name": "iris", "model_version": "1", "outputs": [
        {"name": "predict", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 16}},
        {"name": "predict_proba", "datatype": "FP64", "shape": [2, 1], "parameters": {"binary_data_size": 16}}]}
    classes, proba = np.array([0, 2], "<i8").tobytes(), np.array([0.25, 0.5]).tobytes()
    raw = convert.infer_response(v2.InferResponse(header, classes + proba, has_binary=True), raw=True)
    assert list(raw.raw_output_contents) == [classes, proba] and raw.id == "a"
    typed_header = {**header, "outputs": [{"name": "predict", "datatype": "INT64", "shape": [2], "data": np.array([0, 2])},
                                          {"name": "predict_proba", "datatype": "FP64", "shape": [2, 1], "data": [0.25, 0.5]}]}
    typed = convert.infer_response(v2.InferResponse(typed_header), raw=False)
    assert list(typed.outputs[0].contents.int64_contents) == [0, 2]
    assert list(typed.outputs[1].contents.fp64_contents) == [0.25, 0.5] and not typed.raw_output_contents
