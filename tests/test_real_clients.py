"""What real clients send, end to end on a real server: KServe's SDK (V1 and V2), MLflow's client, Prometheus.

Each client is the project's own code (``kserve.InferenceRESTClient``,
``mlflow.pyfunc.scoring_server.client.ScoringServerClient``), or for bodies the
client cannot send itself (CSV, Parquet) exactly what pandas writes for them.
"""
from __future__ import annotations

import asyncio
import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import requests
from conftest import FEATURES, KNOWN_ROWS, free_port, run_server, serve_args, server_env
from test_metrics import samples

from iris_service import __version__

with warnings.catch_warnings():
    # mlflow warns about its own type hints while importing; nothing of ours is involved.
    warnings.simplefilter("ignore")
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.infer_type import RequestedOutput
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

ROWS = [row for row, _, _ in KNOWN_ROWS]
CLASSES = [index for _, index, _ in KNOWN_ROWS]
NAMES = [name for _, _, name in KNOWN_ROWS]
pytestmark = pytest.mark.server


def _serve(artifact: Path, folder: Path, **env: str) -> Iterator[str]:
    port = free_port()
    with run_server(serve_args(port), server_env(artifact, folder, **env), port,
                    output=folder / f"server-{port}.log") as (base, _):
        yield base


@pytest.fixture(scope="module")
def server(iris_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A production server (UI off), shared by the tests that only read answers."""
    yield from _serve(iris_artifact, tmp_path_factory.mktemp("clients"))


@pytest.fixture(scope="module")
def ui_server(iris_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(iris_artifact, tmp_path_factory.mktemp("clients-ui"), IRIS_SERVICE_UI_ENABLED="true")


def kserve(protocol: str) -> InferenceRESTClient:
    return InferenceRESTClient(RESTConfig(protocol=protocol, retries=0, timeout=10))


def frame() -> pd.DataFrame:
    return pd.DataFrame(ROWS, columns=list(FEATURES))


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


def test_server_metadata_answers_at_the_openapi_documents_spelling(server):
    """The Open Inference Protocol's OpenAPI document says GET /v2/; its prose and Triton's client say /v2."""
    bare, slash = requests.get(f"{server}/v2", timeout=10), requests.get(f"{server}/v2/", timeout=10)
    assert bare.status_code == slash.status_code == 200
    assert slash.json() == bare.json() == {"name": "iris-service", "version": __version__,
                                           "extensions": ["binary_tensor_data", "model_repository"]}


# -- KServe's SDK, V1 -------------------------------------------------------------------------

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


def test_kserve_v1_explain_is_a_clear_501(server):
    async def call(name: str):
        async with kserve("v1") as client:
            return await client.explain(server, name, {"instances": ROWS})

    with pytest.raises(httpx.HTTPStatusError) as served:
        asyncio.run(call("iris"))
    assert served.value.response.status_code == 501
    assert served.value.response.json()["error"].startswith("Explanations are not available for model 'iris'")
    with pytest.raises(httpx.HTTPStatusError) as unknown:
        asyncio.run(call("nope"))
    assert unknown.value.response.status_code == 404
    assert unknown.value.response.json()["error"] == "No model named 'nope'; known models: iris."


# -- MLflow's client and the bodies pandas writes -----------------------------------------------

def test_mlflow_client_scores_a_dataframe(server):
    port = int(server.rsplit(":", 1)[1])
    client = ScoringServerClient("127.0.0.1", port)
    client.ping()
    assert client.get_version() == __version__
    assert client.invoke(frame()) == {"predictions": CLASSES}


def test_mlflow_client_missing_value_is_named_by_row_and_column(server):
    """pandas writes NaN, which JSON has not: the 400 says which cell, with MLflow's error_code."""
    port = int(server.rsplit(":", 1)[1])
    data = frame()
    data.loc[1, "petal_length"] = np.nan
    with pytest.raises(Exception, match="error code 400") as raised:
        ScoringServerClient("127.0.0.1", port).invoke(data)
    text = str(raised.value)
    assert "Missing value (NaN) at row 1, column 'petal_length'" in text
    assert '"error_code":"BAD_REQUEST"' in text


def test_csv_with_the_dataframes_index_column_says_so(server):
    response = requests.post(f"{server}/invocations", data=frame().to_csv(), timeout=10,
                             headers={"Content-Type": "text/csv"})
    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "BAD_REQUEST" and body["message"] == body["error"]
    assert body["error"].startswith("Unknown column(s): ''. Expected: sepal_length,")
    assert "looks like the DataFrame's index" in body["error"]
    no_index = requests.post(f"{server}/invocations", data=frame().to_csv(index=False), timeout=10,
                             headers={"Content-Type": "text/csv"})
    assert no_index.json() == {"predictions": CLASSES}


def test_parquet_body_as_mlflow_3_sends_it(server):
    data = frame()
    data.index = [10, 11, 12]  # stored as __index_level_0__, which is the index, not a feature
    buffer = io.BytesIO()
    data.to_parquet(buffer)
    response = requests.post(f"{server}/invocations", data=buffer.getvalue(), timeout=10,
                             headers={"Content-Type": "application/vnd.apache.parquet"})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": CLASSES}


# -- Prometheus -----------------------------------------------------------------------------------

def test_first_scrape_after_start_has_every_known_series_at_zero(live_server):
    """increase() needs the series before the first burst: routes and classes exist at 0 at once."""
    with live_server() as base:
        first = samples(requests.get(f"{base}/metrics", timeout=10).text)
        for name in NAMES:
            assert first[("iris_predictions_total", labels(model="iris", version="1", **{"class": name}))] == 0
        assert first[("iris_prediction_batch_size_count", labels(model="iris", version="1"))] == 0
        for endpoint, method in [("/predict", "POST"), ("/v2/models/<name>/infer", "POST"),
                                 ("/v1/models/<name>:predict", "POST"), ("/invocations", "POST")]:
            route = labels(endpoint=endpoint, method=method, status="200")
            assert first[("iris_http_requests_total", route)] == 0
            assert first[("iris_http_request_duration_seconds_count", route)] == 0

        for _ in range(3):
            assert requests.post(f"{base}/predict", json={"features": ROWS[2]}, timeout=10).status_code == 200
        after = samples(requests.get(f"{base}/metrics", timeout=10).text)
    assert after[("iris_http_requests_total", labels(endpoint="/predict", method="POST", status="200"))] == 3
    assert after[("iris_predictions_total", labels(model="iris", version="1", **{"class": "virginica"}))] == 3
    assert after[("iris_predictions_total", labels(model="iris", version="1", **{"class": "setosa"}))] == 0


def labels(**items: str) -> frozenset[tuple[str, str]]:
    return frozenset(items.items())
