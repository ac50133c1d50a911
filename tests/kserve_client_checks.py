"""KServe's SDK (``kserve.InferenceRESTClient``) against a live server: run by tests/test_real_clients.py.

Not collected by the suite itself (its name does not start with ``test_``): KServe's SDK and
tritonclient.grpc register the same protobuf names, so these run in an interpreter of their own.
"""
from __future__ import annotations

import asyncio
import warnings

import httpx
import numpy as np
import pytest
import requests
from conftest import KNOWN_ROWS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the SDK's own imports warn; nothing of ours is involved
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.infer_type import RequestedOutput


ROWS = [row for row, _, _ in KNOWN_ROWS]
CLASSES = [index for _, index, _ in KNOWN_ROWS]
pytestmark = pytest.mark.server


def kserve(protocol: str) -> InferenceRESTClient:
    return InferenceRESTClient(RESTConfig(protocol=protocol, retries=0, timeout=10))


# -- KServe's SDK, V2 (Open Inference Protocol) -------------------------------------------------

def test_kserve_v2_infer_request_with_model_name_and_id(server):
    """The SDK's main API: an InferRequest (model_name and id in the body), JSON tensors."""
    tensor = InferInput(name="input-0", shape=[3, 4], datatype="FP64")
    tensor.set_data_from_numpy(np.array(ROWS, dtype=np.float64), binary_data=False)
    request = InferRequest(model_name="iris", infer_inputs=[tensor], request_id="kserve-json-1",
                           request_outputs=[RequestedOutput("predict"), RequestedOutput("predict_proba")])

    async def call():
        async with kserve("v2") as client:
            return await client.infer(server, request, model_name="iris")

    response = asyncio.run(call())
    assert response.id == "kserve-json-1"
    assert response.model_name == "iris"  # the SDK reads no model_version from a REST answer
    outputs = {output.name: output.as_numpy() for output in response.outputs}
    assert outputs["predict"].tolist() == CLASSES
    assert outputs["predict_proba"].shape == (3, 3)
    assert outputs["predict_proba"].argmax(axis=1).tolist() == CLASSES


def test_kserve_v2_binary_tensor_request(server):
    """set_data_from_numpy's default: the tensor travels as bytes after the JSON header."""
    tensor = InferInput(name="input-0", shape=[3, 4], datatype="FP32")
    tensor.set_data_from_numpy(np.array(ROWS, dtype=np.float32))
    request = InferRequest(model_name="iris", infer_inputs=[tensor], request_id="kserve-binary-1",
                           parameters={"binary_data_output": True})

    async def call():
        async with kserve("v2") as client:
            return await client.infer(server, request, model_name="iris")

    response = asyncio.run(call())
    assert response.id == "kserve-binary-1"
    [output] = response.outputs
    assert output.name == "predict"
    assert output.as_numpy().tolist() == CLASSES


def test_kserve_v2_health_and_readiness(server):
    async def call():
        async with kserve("v2") as client:
            return (await client.is_server_live(server), await client.is_server_ready(server),
                    await client.is_model_ready(server, "iris"), await client.is_model_ready(server, "nope"))

    assert asyncio.run(call()) == (True, True, True, False)


def test_kserve_v2_request_naming_another_model_is_refused(server):
    tensor = InferInput(name="input-0", shape=[1, 4], datatype="FP64")
    tensor.set_data_from_numpy(np.array(ROWS[:1], dtype=np.float64), binary_data=False)
    request = InferRequest(model_name="wine", infer_inputs=[tensor])

    async def call():
        async with kserve("v2") as client:
            return await client.infer(server, request, model_name="iris")

    with pytest.raises(httpx.HTTPStatusError) as raised:
        asyncio.run(call())
    assert raised.value.response.status_code == 400
    assert "The body's model_name is 'wine' but this request is for model 'iris'." in str(raised.value)


def test_kserve_v1_predict_liveness_and_model_readiness(server):
    async def call():
        async with kserve("v1") as client:
            return (await client.infer(server, {"instances": ROWS}, model_name="iris"),
                    await client.is_server_live(server), await client.is_model_ready(server, "iris"))

    answer, live, ready = asyncio.run(call())
    assert answer == {"predictions": CLASSES}
    assert live is True  # GET / answers {"status": "alive", ...} with the UI off
    assert ready is True


def test_kserve_v1_liveness_with_the_demo_page_on(ui_server):
    """The SDK sends Accept: */*, so / answers it the JSON index; a browser still gets the page."""
    async def call():
        async with kserve("v1") as client:
            return await client.is_server_live(ui_server)

    assert asyncio.run(call()) is True
    browser = requests.get(ui_server + "/", timeout=10, headers={
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"})
    assert browser.status_code == 200
    assert browser.headers["Content-Type"].startswith("text/html")
    assert "Accept" in browser.headers["Vary"]


def test_kserve_v1_explain_answers_contributions(server):
    async def call(name: str):
        async with kserve("v1") as client:
            return await client.explain(server, name, {"instances": ROWS})

    answer = asyncio.run(call("iris"))
    assert len(answer["explanations"]) == len(ROWS)
    assert answer["features"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    for row in answer["explanations"]:
        k = row["prediction"]
        assert answer["baseline"][k] + sum(row["contributions"][k]) == pytest.approx(row["scores"][k], abs=1e-9)
    with pytest.raises(httpx.HTTPStatusError) as unknown:
        asyncio.run(call("nope"))
    assert unknown.value.response.status_code == 404
    assert unknown.value.response.json()["error"] == "No model named 'nope'; known models: iris."

