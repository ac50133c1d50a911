"""Hand-made hostile input: every case answers a JSON 4xx and the server keeps serving.

The first half runs in-process; the second against a real waitress server on a
loopback port (bodies over the limit with and without Content-Length, slow
clients, clients that hang up), whose log must show no server fault.
"""
from __future__ import annotations

import gzip
import http.client
import json
import socket
import struct
import time
import tracemalloc
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import KNOWN_ROWS, create_app_for_test, free_port, run_server, serve_args, server_env

ROW = KNOWN_ROWS[0][0]
JSON = {"Content-Type": "application/json"}
JSON_ROUTES = ["/predict", "/models/iris/predict", "/v1/models/iris:predict", "/invocations"]
SERVER_LIMIT = 100_000
CHANNEL_TIMEOUT = 2


def assert_json_4xx(response, status: int | tuple[int, ...] = ()) -> dict:
    expected = status if isinstance(status, tuple) else (status,)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:300]
    if expected:
        assert response.status_code in expected
    assert response.mimetype == "application/json"
    payload = response.get_json()
    assert isinstance(payload, dict)
    return payload


# --- in-process ---------------------------------------------------------------------

@pytest.mark.parametrize("route", JSON_ROUTES)
@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000,
     b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
     b'{"features": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"],
    ids=["arrays", "objects", "inside-features"],
)
def test_json_nested_100k_levels_is_400(client, route, body):
    payload = assert_json_4xx(client.post(route, data=body, headers=JSON), 400)
    assert "depth" in json.dumps(payload).lower() or "json" in json.dumps(payload).lower()


@pytest.mark.parametrize(
    ("body", "field"),
    [({"features": [1.0] * 1_000_000}, "features"),
     ({"instances": [0] * 1_000_000}, "instances"),
     ({"instances": [[1.0, 2.0, 3.0, 4.0]] * 200_000}, "instances")],
    ids=["million-features", "million-rows-of-scalars", "200k-rows"],
)
def test_million_element_arrays_are_422(client, body, field):
    payload = assert_json_4xx(client.post("/predict", json=body), 422)
    assert field in payload["errors"]["json"]


def test_million_element_top_level_array_is_422(client):
    assert_json_4xx(client.post("/predict", json=[1] * 1_000_000), 422)


@pytest.mark.parametrize("literal", ["1e309", "-1e309", "1e-400" + "0" * 10, "9" * 5000])
def test_out_of_range_numbers_are_4xx(client, literal):
    response = client.post("/predict", data=f'{{"features": [5.1, 3.5, 1.4, {literal}]}}', headers=JSON)
    if literal.startswith("1e-400"):
        # Underflow is a valid float (0.0), not an error.
        assert response.status_code == 200
    else:
        assert_json_4xx(response, (400, 422))


def test_negative_zero_predicts_like_zero(client):
    negative = client.post("/predict", data='{"features": [-0.0, -0.0, -0.0, -0.0]}', headers=JSON)
    positive = client.post("/predict", json={"features": [0.0, 0.0, 0.0, 0.0]})
    assert negative.status_code == 200
    assert negative.get_json() == positive.get_json()


@pytest.mark.parametrize(
    "body",
    [{"features": "x" * 8_000_000},
     {"features": ROW, "k" * 1_000_000: 1},
     {"features": {"sepal_length" * 100_000: 1.0}},
     {"instances": ["x" * 1_000_000] * 4}],
    ids=["8MB-value", "1MB-key", "1MB-feature-name", "4MB-rows"],
)
def test_huge_strings_are_422(client, body):
    assert_json_4xx(client.post("/predict", json=body), 422)


def test_huge_model_name_in_path_is_404(client):
    response = client.post("/models/" + "m" * 60_000 + "/predict", json={"features": ROW})
    assert_json_4xx(response, 404)


@pytest.mark.parametrize(
    "body",
    [b'{"features": [5.1, 3.5, 1.4, 0.2], "\xff": 1}',
     b'{"features": "\xc3\x28"}',
     b'{"features": "\xed\xa0\x80"}',
     b'{"features": "\\ud800"}',
     b"\xef\xbb\xbf\xff\xfe"],
    ids=["invalid-byte", "bad-continuation", "encoded-surrogate", "escaped-lone-surrogate", "bom-garbage"],
)
@pytest.mark.parametrize("route", JSON_ROUTES)
def test_invalid_utf8_is_4xx(client, route, body):
    assert_json_4xx(client.post(route, data=body, headers=JSON), (400, 422))


def test_invalid_utf8_in_path_is_404(client):
    assert_json_4xx(client.post("/models/%FF%FE/predict", json={"features": ROW}), 404)


def test_latin1_bytes_in_api_key_header_are_401(iris_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "API_KEYS": ["good-key"]})
    response = app.test_client().post("/predict", json={"features": ROW},
                                      environ_overrides={"HTTP_X_API_KEY": "\xff\xfe\x00"})
    assert_json_4xx(response, 401)


def test_gzip_bomb_costs_no_more_than_the_limit(iris_artifact, tmp_path, monkeypatch):
    """A 256 MiB bomb (~250 kB on the wire) against a 1 MiB limit: 413, small peak memory."""
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact), "MAX_CONTENT_LENGTH": 1 << 20})
    client = app.test_client()
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    bomb = b"".join(compressor.compress(zeros) for _ in range(256)) + compressor.flush()
    assert len(bomb) < 1 << 20
    client.get("/health/live")  # first-request allocations out of the measurement
    tracemalloc.start()
    try:
        response = client.post("/predict", data=bomb, headers={**JSON, "Content-Encoding": "gzip"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_json_4xx(response, 413)
    assert peak < 8 * (1 << 20), f"peak {peak} bytes while refusing a gzip bomb"


# --- a real waitress server -------------------------------------------------------------

@pytest.fixture(scope="module")
def server(iris_artifact, tmp_path_factory):
    """waitress with 2 threads, a 100 kB body limit and a 2 s channel timeout; yields (host, port, log)."""
    tmp = tmp_path_factory.mktemp("hostile")
    port = free_port()
    log = tmp / "server.log"
    env = server_env(iris_artifact, tmp, IRIS_SERVICE_MAX_CONTENT_LENGTH=str(SERVER_LIMIT))
    args = serve_args(port, "--server", "waitress", "--threads", "2", "--channel-timeout", str(CHANNEL_TIMEOUT))
    with run_server(args, env, port, output=log):
        yield "127.0.0.1", port, log


def server_faults(log: Path) -> list[str]:
    """Lines of the server log that report a fault (tracebacks, errors, socket errors)."""
    markers = ("Traceback", "Socket error", '"level":"ERROR"', "ERROR", "Exception")
    return [line for line in log.read_text(errors="replace").splitlines() if any(m in line for m in markers)]


def raw_exchange(host: str, port: int, request: bytes, timeout: float = 20.0) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, body


def test_body_over_limit_with_content_length_is_413_json(server):
    host, port, _ = server
    body = json.dumps({"instances": [ROW] * 6_000}).encode()
    assert len(body) > SERVER_LIMIT
    raw = raw_exchange(host, port, b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                       + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    status, headers, payload = parse_response(raw)
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(payload)["message"] == f"The request body is larger than the limit of {SERVER_LIMIT} bytes."


def test_chunked_body_over_limit_is_413_json(server):
    host, port, _ = server
    body = json.dumps({"instances": [ROW] * 6_000}).encode()
    chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))
    conn = http.client.HTTPConnection(host, port, timeout=20)
    try:
        conn.request("POST", "/predict", body=chunks, headers=JSON, encode_chunked=True)
        response = conn.getresponse()
        payload = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 413
    assert payload["code"] == 413


def test_chunked_body_under_limit_is_served(server):
    host, port, _ = server
    body = json.dumps({"instances": [r for r, _, _ in KNOWN_ROWS]}).encode()
    conn = http.client.HTTPConnection(host, port, timeout=20)
    try:
        conn.request("POST", "/predict", body=iter([body[:10], body[10:]]), headers=JSON, encode_chunked=True)
        response = conn.getresponse()
        payload = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 200
    assert [p["prediction"] for p in payload["predictions"]] == [0, 1, 2]


def test_gzip_bomb_against_the_server_is_413(server):
    host, port, _ = server
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = b"".join(compressor.compress(bytes(1 << 20)) for _ in range(64)) + compressor.flush()
    response = requests.post(f"http://{host}:{port}/predict", data=bomb, timeout=20,
                             headers={**JSON, "Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert response.json()["code"] == 413
    small = requests.post(f"http://{host}:{port}/predict", data=gzip.compress(json.dumps({"features": ROW}).encode()),
                          headers={**JSON, "Content-Encoding": "gzip"}, timeout=20)
    assert small.json()["label"] == "setosa"


def test_slow_clients_time_out_without_starving_workers(server):
    """20 stalled connections against 2 worker threads: others are still served, stalled ones closed."""
    host, port, log = server
    stalled = []
    try:
        for i in range(20):
            sock = socket.create_connection((host, port), timeout=30)
            if i % 2:
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: appl")  # headers never end
            else:
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 1000\r\n\r\n{\"features\": [")  # body never ends
            stalled.append(sock)

        def predict(_: int) -> int:
            return requests.post(f"http://{host}:{port}/predict", json={"features": ROW}, timeout=10).status_code

        with ThreadPoolExecutor(max_workers=4) as pool:
            assert list(pool.map(predict, range(12))) == [200] * 12

        for sock in stalled:
            sock.settimeout(CHANNEL_TIMEOUT * 10)
            try:
                leftover = sock.recv(65536)
            except ConnectionResetError:
                leftover = b""
            # Closed by the server; at most an error answer before the close.
            assert leftover == b"" or leftover.startswith(b"HTTP/1.1 4")
    finally:
        for sock in stalled:
            sock.close()
    assert requests.get(f"http://{host}:{port}/health/live", timeout=10).status_code == 200


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN, as a crashed client or a dropped connection does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_disconnecting_mid_request_logs_no_server_fault(server, how):
    host, port, log = server
    body = json.dumps({"instances": [ROW] * 2_000}).encode()
    request = (b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
               + f"Content-Length: {len(body)}\r\n\r\n".encode())
    for _ in range(5):
        # Hang up after the whole request (the answer has nowhere to go) ...
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(request + body)
        _reset(sock) if how == "reset" else sock.close()
        # ... and halfway through sending the body.
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(request + body[: len(body) // 2])
        _reset(sock) if how == "reset" else sock.close()
    time.sleep(1.0)  # let the workers finish writing to the closed sockets
    answer = requests.post(f"http://{host}:{port}/predict", json={"features": ROW}, timeout=10)
    assert answer.status_code == 200
    assert server_faults(log) == []
