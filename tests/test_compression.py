"""gzip and deflate request bodies (bounded), refused codings and charsets, gzip answers."""
from __future__ import annotations

import gzip
import io
import json
import tracemalloc
import zlib

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from conftest import KNOWN_ROWS, create_app_for_test

ROW = KNOWN_ROWS[0][0]
ROWS = [row for row, _, _ in KNOWN_ROWS]
GZIP_JSON = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
DEFLATE_JSON = {"Content-Encoding": "deflate", "Content-Type": "application/json"}
UNSUPPORTED = "is not supported; send the body as gzip, deflate or identity."


def gz(payload: object) -> bytes:
    return gzip.compress(json.dumps(payload).encode())


def raw_deflate(data: bytes, level: int = 6) -> bytes:
    """Deflate without the zlib wrapper (RFC 1951), as some clients send ``deflate``."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


#: The two forms a ``Content-Encoding: deflate`` body arrives in.
DEFLATERS = {"zlib": zlib.compress, "raw": raw_deflate}


@pytest.fixture
def small_limit_client(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "MAX_CONTENT_LENGTH": 10_000})
    return app.test_client()


class CountingStream(io.BytesIO):
    """A request body that counts the bytes the server read of it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.taken = 0

    def read(self, size: int | None = -1) -> bytes:
        out = super().read(size)
        self.taken += len(out)
        return out

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = super().readinto(buffer)
        self.taken += n
        return n


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


def test_large_error_answer_is_compressed_too(iris_artifact, tmp_path, monkeypatch):
    # Error messages are bounded (a 5000-character key is echoed clipped), so "large" is set by the threshold.
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "COMPRESS_MIN_SIZE": 100})
    response = app.test_client().post("/predict", json={"features": ROW, "x" * 5000: 1},
                                      headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 422
    assert response.headers["Content-Encoding"] == "gzip"
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


# --- deflate ----------------------------------------------------------------------------


@pytest.mark.parametrize("form", sorted(DEFLATERS))
@pytest.mark.parametrize("encoding", ["deflate", "Deflate"])
def test_deflate_request_body_is_predicted_like_plain_json(client, form, encoding):
    """RFC 9110's zlib-wrapped deflate, and the raw deflate some clients send under the same name."""
    plain = client.post("/predict", json={"instances": ROWS}).get_json()
    body = DEFLATERS[form](json.dumps({"instances": ROWS}).encode())
    response = client.post("/predict", data=body,
                           headers={"Content-Encoding": encoding, "Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.get_json() == plain
    assert [p["label"] for p in response.get_json()["predictions"]] == ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize("form", sorted(DEFLATERS))
def test_deflate_on_v2_answers_like_plain_json(client, form):
    body = {"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": ROWS}]}
    plain = client.post("/v2/models/iris/infer", json=body).get_json()
    response = client.post("/v2/models/iris/infer", data=DEFLATERS[form](json.dumps(body).encode()),
                           headers=DEFLATE_JSON)
    assert response.status_code == 200
    assert response.get_json() == plain
    assert plain["outputs"][0]["data"] == [0, 1, 2]


@pytest.mark.parametrize(("encoding", "compress"), [("gzip", gzip.compress), *(("deflate", f) for f in DEFLATERS.values())],
                         ids=["gzip", "deflate-zlib", "deflate-raw"])
def test_one_decompressed_byte_over_the_limit_is_413(small_limit_client, encoding, compress):
    """At the limit it is served; one byte more is a 413, never a body cut at the limit."""
    headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
    payload = json.dumps({"features": ROW}).encode()
    at_limit = payload + b" " * (10_000 - len(payload))
    served = small_limit_client.post("/predict", data=compress(at_limit), headers=headers)
    assert served.status_code == 200
    assert served.get_json()["label"] == "setosa"
    response = small_limit_client.post("/predict", data=compress(at_limit + b" "), headers=headers)
    assert response.status_code == 413
    assert response.get_json() == {
        "code": 413,
        "status": "Request Entity Too Large",
        "message": "The request body is larger than the limit of 10000 bytes.",
    }


@pytest.mark.parametrize("form", sorted(DEFLATERS))
def test_deflate_bomb_is_refused_cheaply(iris_artifact, tmp_path, monkeypatch, form):
    """256 MiB of zeros in ~250 kB against a 1 MiB limit: 413 after reading and inflating little of it."""
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    client = create_app_for_test({"MODEL_PATH": str(iris_artifact), "MAX_CONTENT_LENGTH": 1 << 20}).test_client()
    wbits = zlib.MAX_WBITS if form == "zlib" else -zlib.MAX_WBITS
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = bytes(1 << 20)
    bomb = b"".join(compressor.compress(zeros) for _ in range(256)) + compressor.flush()
    assert len(bomb) < 1 << 20
    body = CountingStream(bomb)
    client.get("/health/live")  # first-request allocations out of the measurement
    tracemalloc.start()
    try:
        response = client.post("/predict", data=bomb, headers=DEFLATE_JSON, environ_overrides={"wsgi.input": body})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413
    assert response.get_json()["code"] == 413
    assert peak < 8 * (1 << 20), f"peak {peak} bytes while refusing a deflate bomb"
    assert body.taken < len(bomb) // 2, f"read {body.taken} of the bomb's {len(bomb)} bytes"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not deflate at all", "The request body is not valid deflate."),
        (zlib.compress(b'{"features": [5.1, 3.5, 1.4, 0.2]}')[:12], "The deflate request body is truncated."),
        (raw_deflate(b'{"features": [5.1, 3.5, 1.4, 0.2]}')[:12], "The deflate request body is truncated."),
        (b"x", "The deflate request body is truncated."),
        (b"", "The deflate request body is truncated."),
        (zlib.compress(b'{"features": [5.1, 3.5, 1.4, 0.2]}') + b"trailing",
         "The request body is not valid deflate: bytes follow the end of its stream."),
    ],
    ids=["garbage", "truncated-zlib", "truncated-raw", "one-byte", "empty", "trailing-bytes"],
)
def test_broken_deflate_is_400_json(client, body, message):
    response = client.post("/predict", data=body, headers=DEFLATE_JSON)
    assert response.status_code == 400
    assert response.get_json() == {"code": 400, "status": "Bad Request", "message": message}


def test_identity_is_a_plain_body(client):
    response = client.post("/predict", data=json.dumps({"features": ROW}),
                           headers={"Content-Encoding": "identity", "Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.get_json()["label"] == "setosa"


# --- codings we cannot decode -------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "made-up", "gzip, br", "gzip, gzip", "identity, gzip"])
def test_unsupported_encoding_is_415_naming_the_supported_ones(client, encoding):
    """A valid plain JSON body under a coding we cannot decode: refused, not read as if plain."""
    response = client.post("/predict", data=json.dumps({"features": ROW}),
                           headers={"Content-Encoding": encoding, "Content-Type": "application/json"})
    assert response.status_code == 415
    assert response.get_json() == {
        "code": 415,
        "status": "Unsupported Media Type",
        "message": f"Content-Encoding {encoding!r} {UNSUPPORTED}",
    }
    assert response.headers["Accept-Encoding"] == "gzip, deflate"


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/v1/models/iris:predict", {"instances": ROWS}),
        ("/v2/models/iris/infer", {"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": ROWS}]}),
        ("/invocations", {"instances": ROWS}),
    ],
    ids=["v1", "v2", "mlflow"],
)
def test_unsupported_encoding_on_protocol_routes_answers_their_error_shape(client, url, body):
    response = client.post(url, data=json.dumps(body), headers={"Content-Encoding": "br", "Content-Type": "application/json"})
    assert response.status_code == 415
    error = f"Content-Encoding 'br' {UNSUPPORTED}"
    # MLflow's routes add its error_code and message to the error.
    mlflow = {"error_code": "BAD_REQUEST", "message": error} if url == "/invocations" else {}
    assert response.get_json() == {"error": error, **mlflow}
    # The same body plain is served: the refusal is the coding's.
    assert client.post(url, json=body).status_code == 200


# --- multi-member gzip ------------------------------------------------------------------------


def test_multi_member_gzip_is_read_whole(client):
    """What ``gzip -c a b`` writes: one member per file, the body their concatenation."""
    payload = json.dumps({"instances": ROWS}).encode()
    first, second = payload[: len(payload) // 2], payload[len(payload) // 2 :]
    plain = client.post("/predict", json={"instances": ROWS}).get_json()
    for body in (gzip.compress(first) + gzip.compress(second),
                 gzip.compress(payload[:5]) + gzip.compress(b"") + gzip.compress(payload[5:30]) + gzip.compress(payload[30:])):
        response = client.post("/predict", data=body, headers=GZIP_JSON)
        assert response.status_code == 200
        assert response.get_json() == plain
        assert [p["prediction"] for p in response.get_json()["predictions"]] == [0, 1, 2]


def test_multi_member_gzip_is_bounded_by_all_members_together(small_limit_client):
    payload = json.dumps({"features": ROW}).encode()
    padding = b" " * (5_000 - len(payload))
    at_limit = gzip.compress(payload + padding) + gzip.compress(b" " * 5_000)
    assert small_limit_client.post("/predict", data=at_limit, headers=GZIP_JSON).get_json()["label"] == "setosa"
    over = at_limit + gzip.compress(b" ")
    response = small_limit_client.post("/predict", data=over, headers=GZIP_JSON)
    assert response.status_code == 413
    assert response.get_json()["message"] == "The request body is larger than the limit of 10000 bytes."


@pytest.mark.parametrize(
    ("tail", "message"),
    [(b"garbage", "The request body is not valid gzip."), (gzip.compress(b" ")[:10], "The gzip request body is truncated.")],
    ids=["garbage", "truncated-member"],
)
def test_bytes_after_a_gzip_member_must_be_a_member(client, tail, message):
    """Once ignored; now a 400, so the server never answers for part of what was sent."""
    response = client.post("/predict", data=gz({"features": ROW}) + tail, headers=GZIP_JSON)
    assert response.status_code == 400
    assert response.get_json() == {"code": 400, "status": "Bad Request", "message": message}


# --- charsets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("charset", ["latin-1", "ISO-8859-1", "utf-16", "windows-1252", '"latin-1"'])
def test_json_in_another_charset_is_415(client, charset):
    body = json.dumps({"features": ROW}).encode("latin-1")
    response = client.post("/predict", data=body, content_type=f"application/json; charset={charset}")
    assert response.status_code == 415
    shown = charset.strip('"')
    assert response.get_json() == {
        "code": 415,
        "status": "Unsupported Media Type",
        "message": f"Send the JSON body as UTF-8 (got charset {shown!r}).",
    }


def test_json_in_another_charset_on_v2_answers_its_error_shape(client):
    body = {"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": ROWS}]}
    response = client.post("/v2/models/iris/infer", data=json.dumps(body), content_type="application/json; charset=latin-1")
    assert response.status_code == 415
    assert response.get_json() == {"error": "Send the JSON body as UTF-8 (got charset 'latin-1')."}


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/json; charset=UTF-8",
                                          'application/json; charset="utf-8"', "application/json;charset=us-ascii",
                                          "application/json; version=charset"])
def test_json_in_utf8_or_ascii_is_served(client, content_type):
    response = client.post("/predict", data=json.dumps({"features": ROW}), content_type=content_type)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["label"] == "setosa"


# --- a real server ----------------------------------------------------------------------------


@pytest.mark.server
def test_encodings_and_charsets_on_a_real_server(live_server):
    payload = json.dumps({"instances": ROWS}).encode()
    json_type = {"Content-Type": "application/json"}
    with live_server() as base:
        url = base + "/predict"
        plain = requests.post(url, data=payload, headers=json_type, timeout=30).json()
        for encoding, body in [("deflate", zlib.compress(payload)), ("deflate", raw_deflate(payload)),
                               ("gzip", gzip.compress(payload[:20]) + gzip.compress(payload[20:]))]:
            response = requests.post(url, data=body, headers={**json_type, "Content-Encoding": encoding}, timeout=30)
            assert response.status_code == 200, (encoding, response.text)
            assert response.json() == plain
        refused = requests.post(url, data=payload, headers={**json_type, "Content-Encoding": "br"}, timeout=30)
        assert refused.status_code == 415
        assert refused.json()["message"] == f"Content-Encoding 'br' {UNSUPPORTED}"
        latin = requests.post(url, data=payload, headers={"Content-Type": "application/json; charset=latin-1"}, timeout=30)
        assert latin.status_code == 415
        assert latin.json()["message"] == "Send the JSON body as UTF-8 (got charset 'latin-1')."
    assert [p["label"] for p in plain["predictions"]] == ["setosa", "versicolor", "virginica"]


@pytest.mark.server
def test_triton_client_request_compression_answers_like_uncompressed(live_server):
    """tritonclient.http's ``request_compression_algorithm``: gzip and deflate (zlib) bodies, JSON and binary."""
    rows = np.array(ROWS)
    with live_server() as base:
        client = httpclient.InferenceServerClient(base.removeprefix("http://"))
        try:
            for binary in (True, False):
                answers = {}
                for algorithm in (None, "gzip", "deflate"):
                    tensor = httpclient.InferInput("input-0", list(rows.shape), "FP64")
                    tensor.set_data_from_numpy(rows, binary_data=binary)
                    outputs = [httpclient.InferRequestedOutput("predict", binary_data=binary),
                               httpclient.InferRequestedOutput("predict_proba", binary_data=binary)]
                    result = client.infer("iris", [tensor], outputs=outputs, request_compression_algorithm=algorithm)
                    answers[algorithm] = (result.as_numpy("predict").tolist(), result.as_numpy("predict_proba"))
                assert answers[None][0] == [0, 1, 2], binary
                for algorithm in ("gzip", "deflate"):
                    assert answers[algorithm][0] == answers[None][0], (algorithm, binary)
                    np.testing.assert_array_equal(answers[algorithm][1], answers[None][1], err_msg=f"{algorithm} {binary}")
        finally:
            client.close()
