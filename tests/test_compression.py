"""gzip request bodies (bounded) and gzip answers for clients that accept them."""
from __future__ import annotations

import gzip
import json
import zlib

import pytest
from conftest import KNOWN_ROWS, create_app_for_test

ROW = KNOWN_ROWS[0][0]
GZIP_JSON = {"Content-Encoding": "gzip", "Content-Type": "application/json"}


def gz(payload: object) -> bytes:
    return gzip.compress(json.dumps(payload).encode())


@pytest.fixture
def small_limit_client(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "MAX_CONTENT_LENGTH": 10_000})
    return app.test_client()


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", "x-gzip"])
def test_gzip_request_body_is_predicted_like_plain_json(client, encoding):
    plain = client.post("/predict", json={"features": ROW}).get_json()
    response = client.post("/predict", data=gz({"features": ROW}),
                           headers={"Content-Encoding": encoding, "Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.get_json() == plain
    assert response.get_json()["label"] == "setosa"


def test_gzip_batch_on_named_model_route(client):
    rows = [r for r, _, _ in KNOWN_ROWS]
    response = client.post("/models/iris/predict", data=gz({"instances": rows}), headers=GZIP_JSON)
    assert response.status_code == 200
    assert [p["prediction"] for p in response.get_json()["predictions"]] == [0, 1, 2]


def test_decompressed_size_over_limit_is_413_json(small_limit_client):
    # ~1 kB on the wire, 10x the limit once inflated.
    body = gz({"instances": [ROW] * 5_000})
    assert len(body) < 10_000
    response = small_limit_client.post("/predict", data=body, headers=GZIP_JSON)
    assert response.status_code == 413
    assert response.get_json() == {
        "code": 413,
        "status": "Request Entity Too Large",
        "message": "The request body is larger than the limit of 10000 bytes.",
    }


def test_decompressed_size_at_limit_is_served(small_limit_client):
    payload = json.dumps({"features": ROW}).encode()
    body = payload + b" " * (10_000 - len(payload))
    response = small_limit_client.post("/predict", data=gzip.compress(body), headers=GZIP_JSON)
    assert response.status_code == 200


def test_gzip_bomb_is_refused_without_inflating_it(small_limit_client):
    """100 MB of zeros in ~100 kB: refused after reading about the limit."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"0" * (1 << 20)
    bomb = b"".join(compressor.compress(chunk) for _ in range(100)) + compressor.flush()
    assert len(bomb) < 200_000
    response = small_limit_client.post("/predict", data=bomb, headers=GZIP_JSON)
    assert response.status_code == 413
    assert response.get_json()["code"] == 413


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not gzip at all", "The request body is not valid gzip."),
        (gzip.compress(b'{"features": [5.1, 3.5, 1.4, 0.2]}')[:20], "The gzip request body is truncated."),
        (b"", "The gzip request body is truncated."),
    ],
    ids=["garbage", "truncated", "empty"],
)
def test_broken_gzip_is_400_json(client, body, message):
    response = client.post("/predict", data=body, headers=GZIP_JSON)
    assert response.status_code == 400
    assert response.get_json() == {"code": 400, "status": "Bad Request", "message": message}


def test_gzip_of_malformed_json_is_400(client):
    response = client.post("/predict", data=gzip.compress(b"{bad json"), headers=GZIP_JSON)
    assert response.status_code == 400
    assert response.get_json()["errors"] == {"json": ["Invalid JSON body."]}


def test_gzip_body_on_v1_protocol_answers_its_error_shape(client):
    response = client.post("/v1/models/iris:predict", data=b"not gzip", headers=GZIP_JSON)
    assert response.status_code == 400
    assert response.get_json() == {"error": "The request body is not valid gzip."}


def test_large_answer_is_gzipped_when_accepted(client):
    rows = [ROW] * 10_000
    plain = client.post("/predict", json={"instances": rows})
    response = client.post("/predict", json={"instances": rows}, headers={"Accept-Encoding": "gzip, deflate"})
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["Vary"]
    assert int(response.headers["Content-Length"]) == len(response.data)
    assert len(response.data) * 10 < len(plain.data)
    assert json.loads(gzip.decompress(response.data)) == plain.get_json()


def test_answer_is_plain_without_accept_encoding(client):
    response = client.post("/predict", json={"instances": [ROW] * 100})
    assert "Content-Encoding" not in response.headers
    assert len(response.get_json()["predictions"]) == 100


@pytest.mark.parametrize("accept", ["gzip;q=0", "identity", "br"])
def test_answer_is_plain_when_gzip_refused(client, accept):
    response = client.post("/predict", json={"instances": [ROW] * 100}, headers={"Accept-Encoding": accept})
    assert "Content-Encoding" not in response.headers
    assert len(response.get_json()["predictions"]) == 100


def test_small_answer_is_not_compressed(client):
    response = client.post("/predict", json={"features": ROW}, headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in response.headers
    assert response.get_json()["prediction"] == 0


def test_large_error_answer_is_compressed_too(client):
    response = client.post("/predict", json={"features": ROW, "x" * 5000: 1}, headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 422
    assert json.loads(gzip.decompress(response.data))["code"] == 422


def test_compression_can_be_turned_off(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "COMPRESS_RESPONSES": False})
    response = app.test_client().post("/predict", json={"instances": [ROW] * 1000},
                                      headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in response.headers
    assert len(response.get_json()["predictions"]) == 1000


def test_docs_assets_keep_their_own_encoding_and_cache(client):
    response = client.get("/docs/assets/swagger-ui-bundle.js", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    assert "max-age" in response.headers["Cache-Control"]
    response.close()
