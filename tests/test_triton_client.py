"""The official Triton HTTP client against a real server: health, metadata, inference.

Each test starts our CLI's waitress server on a free loopback port with the
``live_server`` fixture and compares every answer with the native ``/predict``.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from conftest import KNOWN_ROWS
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.server

ROWS = np.array([row for row, _, _ in KNOWN_ROWS])
CLASS_NAMES = ["setosa", "versicolor", "virginica"]


@pytest.fixture
def served(live_server) -> Iterator[tuple[str, httpclient.InferenceServerClient]]:
    """The server's base URL and a Triton client for it (``host:port``, no scheme)."""
    with live_server() as base:
        client = httpclient.InferenceServerClient(base.removeprefix("http://"))
        try:
            yield base, client
        finally:
            client.close()


def native_answer(base: str) -> tuple[list[int], np.ndarray]:
    body = requests.post(base + "/predict", json={"instances": ROWS.tolist()}, timeout=10).json()
    classes = [p["prediction"] for p in body["predictions"]]
    proba = np.array([[p["probabilities"][n] for n in CLASS_NAMES] for p in body["predictions"]])
    return classes, proba


def test_health_readiness_and_metadata(served):
    _, client = served
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", model_version="1")
    assert not client.is_model_ready("no-such-model")
    assert not client.is_model_ready("iris", model_version="2")
    server = client.get_server_metadata()
    assert server["name"] == "iris-service"
    assert set(server["extensions"]) == {"binary_tensor_data", "model_repository"}
    metadata = client.get_model_metadata("iris")
    assert metadata["name"] == "iris" and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert metadata["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    assert client.get_model_metadata("iris", model_version="1") == metadata


def test_infer_matches_native_predict(served):
    """FP32 and FP64, JSON and binary inputs, JSON and binary outputs: all equal /predict."""
    base, client = served
    classes, proba = native_answer(base)
    assert classes == [index for _, index, _ in KNOWN_ROWS]
    for datatype, binary_in, binary_out in itertools.product(["FP32", "FP64"], [True, False], [True, False]):
        case = f"{datatype} binary_in={binary_in} binary_out={binary_out}"
        dtype = np.float32 if datatype == "FP32" else np.float64
        tensor = httpclient.InferInput("input-0", list(ROWS.shape), datatype)
        tensor.set_data_from_numpy(ROWS.astype(dtype), binary_data=binary_in)
        outputs = [
            httpclient.InferRequestedOutput("predict", binary_data=binary_out),
            httpclient.InferRequestedOutput("predict_proba", binary_data=binary_out),
        ]
        result = client.infer("iris", [tensor], outputs=outputs, request_id=f"req-{case}")
        predicted = result.as_numpy("predict")
        assert predicted.dtype == np.int64, case
        assert predicted.tolist() == classes, case
        probabilities = result.as_numpy("predict_proba")
        if datatype == "FP64":
            np.testing.assert_array_equal(probabilities, proba, err_msg=case)
        else:  # the rows were rounded to float32 on the way in
            np.testing.assert_allclose(probabilities, proba, rtol=1e-5, atol=1e-7, err_msg=case)
        response = result.get_response()
        assert response["id"] == f"req-{case}"
        assert (response["model_name"], response["model_version"]) == ("iris", "1")


def test_infer_defaults_and_errors(served):
    base, client = served
    classes, _ = native_answer(base)
    # No outputs named: the client asks for binary_data_output and we answer predict.
    tensor = httpclient.InferInput("input-0", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS)
    result = client.infer("iris", [tensor], model_version="1")
    assert result.as_numpy("predict").tolist() == classes
    assert result.as_numpy("predict_proba") is None

    narrow = httpclient.InferInput("input-0", [1, 3], "FP32")
    narrow.set_data_from_numpy(np.array([[1.0, 2.0, 3.0]], dtype=np.float32))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("iris", [narrow])
    assert caught.value.status() == "400"
    assert caught.value.message() == "Input 'input-0' must have shape [N, 4]; got [1, 3]."

    with pytest.raises(InferenceServerException) as caught:
        client.infer("no-such-model", [tensor])
    assert caught.value.status() == "404"
    assert caught.value.message() == "No model named 'no-such-model'; known models: iris."
