"""What real clients send, end to end on a real server: KServe's SDK (V1 and V2), MLflow's client, Prometheus.

Each client is the project's own code (``kserve.InferenceRESTClient``,
``mlflow.pyfunc.scoring_server.client.ScoringServerClient``), or for bodies the
client cannot send itself (CSV, Parquet) exactly what pandas writes for them.
"""
from __future__ import annotations

import io
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from conftest import FEATURES, KNOWN_ROWS
from test_metrics import samples

from iris_service import __version__

with warnings.catch_warnings():
    # mlflow warns about its own type hints while importing; nothing of ours is involved.
    warnings.simplefilter("ignore")
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

ROWS = [row for row, _, _ in KNOWN_ROWS]
CLASSES = [index for _, index, _ in KNOWN_ROWS]
NAMES = [name for _, _, name in KNOWN_ROWS]
pytestmark = pytest.mark.server


def frame() -> pd.DataFrame:
    return pd.DataFrame(ROWS, columns=list(FEATURES))


# -- The Open Inference Protocol's OpenAPI document ---

def test_server_metadata_answers_at_the_openapi_documents_spelling(server):
    """The Open Inference Protocol's OpenAPI document says GET /v2/; its prose and Triton's client say /v2."""
    bare, slash = requests.get(f"{server}/v2", timeout=10), requests.get(f"{server}/v2/", timeout=10)
    assert bare.status_code == slash.status_code == 200
    assert slash.json() == bare.json() == {"name": "iris-service", "version": __version__,
                                           "extensions": ["binary_tensor_data", "model_repository"]}


# -- KServe's SDK, V1 -------------------------------------------------------------------------


# -- KServe's SDK -----------------------------------------------------------------------------------

def test_kserve_sdk_against_a_live_server_in_its_own_interpreter():
    """KServe's SDK and tritonclient.grpc register the same protobuf names (``inference.*``) in protobuf's
    default pool, so they cannot share a process: the SDK's checks (tests/kserve_client_checks.py) run in a
    fresh pytest of their own, against their own live servers, and must all pass."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__).with_name("kserve_client_checks.py"))],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"\b7 passed\b", result.stdout), result.stdout[-2000:]


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
