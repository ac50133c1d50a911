"""Answers of 1 MiB and more travel as the server's ``wsgi.file_wrapper``, byte for byte the same.

waitress would otherwise spool such an answer to a temporary file before sending
it (bench: the 10,000-row ``/predict`` batch). In-process the wrapper is
werkzeug's ``FileWrapper``; over HTTP it is waitress's and gunicorn's own.
"""
from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from conftest import ROOT, free_port, run_server, serve_args, server_env
from werkzeug.wsgi import FileWrapper

import iris_service.rest.app
from iris_service.rest.app import FILE_WRAPPER_MIN_SIZE, IrisResponse


def big_batch(rows: int = 10_000) -> dict[str, Any]:
    """Rows inside the Iris ranges: their ``/predict`` answer is about 1.5 MB."""
    rng = np.random.default_rng(7)
    low, high = np.array([4.3, 2.0, 1.0, 0.1]), np.array([7.9, 4.4, 6.9, 2.5])
    return {"instances": np.round(rng.uniform(low, high, size=(rows, 4)), 1).tolist()}


class Wrappers:
    """A ``wsgi.file_wrapper`` (werkzeug's) that keeps the bytes of each file it is handed."""

    def __init__(self) -> None:
        self.files: list[bytes] = []

    def __call__(self, file: Any, block_size: int = 8192) -> FileWrapper:
        self.files.append(file.getvalue())
        return FileWrapper(file, block_size)


def test_a_large_answer_goes_to_the_file_wrapper_with_the_same_bytes_and_closes_its_response(app):
    closed: list[bool] = []

    @app.after_request
    def on_close(response):
        response.call_on_close(lambda: closed.append(True))
        return response

    client = app.test_client()
    batch = big_batch()
    plain = client.post("/predict", json=batch)
    assert plain.status_code == 200
    assert len(plain.data) >= FILE_WRAPPER_MIN_SIZE  # the premise: this answer is large
    plain.close()
    assert closed == [True]

    wrappers = Wrappers()
    wrapped = client.post("/predict", json=batch, environ_overrides={"wsgi.file_wrapper": wrappers})
    assert wrapped.status_code == 200
    assert wrappers.files == [plain.data]
    assert wrapped.data == plain.data
    assert wrapped.headers["Content-Length"] == str(len(plain.data))
    assert wrapped.headers["Content-Type"] == "application/json"
    assert closed == [True]
    wrapped.close()
    assert closed == [True, True]  # the server closing the file closes the response


def test_small_answers_and_answers_without_a_body_keep_werkzeugs_path(client):
    wrappers = Wrappers()
    one = client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]},
                      environ_overrides={"wsgi.file_wrapper": wrappers})
    assert one.status_code == 200 and one.json["prediction"] == 0
    assert wrappers.files == []

    body = b"x" * FILE_WRAPPER_MIN_SIZE
    for method, status in (("HEAD", 200), ("GET", 204), ("GET", 304), ("GET", 101)):
        environ = {"REQUEST_METHOD": method, "wsgi.file_wrapper": wrappers}
        assert list(IrisResponse(body, status=status).get_app_iter(environ)) == []
    assert b"".join(IrisResponse(body).get_app_iter({"REQUEST_METHOD": "GET"})) == body
    assert wrappers.files == []
    assert b"".join(IrisResponse(body).get_app_iter({"REQUEST_METHOD": "GET", "wsgi.file_wrapper": wrappers})) == body
    assert wrappers.files == [body]


def test_the_wrapper_gets_the_body_after_the_hooks_so_a_gzip_answer_stays_compressed(client, monkeypatch):
    """Compression runs in an after_request hook; the file wrapper is chosen after all of them."""
    batch = big_batch(2_000)
    plain = client.post("/predict", json=batch)
    monkeypatch.setattr(iris_service.rest.app, "FILE_WRAPPER_MIN_SIZE", 1024)
    wrappers = Wrappers()
    zipped = client.post("/predict", json=batch, headers={"Accept-Encoding": "gzip"},
                         environ_overrides={"wsgi.file_wrapper": wrappers})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert wrappers.files == [zipped.data]
    assert gzip.decompress(zipped.data) == plain.data


def test_a_binary_v2_answer_goes_to_the_file_wrapper_too(client, monkeypatch):
    """A view's own Response (V2's binary answer) is made the app's response class by Flask, so it too."""
    rows = big_batch(2_000)["instances"]
    outputs = [{"name": name, "parameters": {"binary_data": True}} for name in ("predict", "predict_proba")]
    body = {"inputs": [{"name": "input-0", "shape": [2_000, 4], "datatype": "FP64", "data": rows}],
            "outputs": outputs}
    plain = client.post("/v2/models/iris/infer", json=body)
    assert plain.status_code == 200 and plain.mimetype == "application/octet-stream"
    monkeypatch.setattr(iris_service.rest.app, "FILE_WRAPPER_MIN_SIZE", 1024)  # a 64 kB answer counts as large
    wrappers = Wrappers()
    wrapped = client.post("/v2/models/iris/infer", json=body, environ_overrides={"wsgi.file_wrapper": wrappers})
    assert wrappers.files == [plain.data] and wrapped.data == plain.data
    assert wrapped.headers["Inference-Header-Content-Length"] == plain.headers["Inference-Header-Content-Length"]


SERVERS = {
    # Our CLI (its own waitress channel and graceful stop), waitress's own runner (the bench's
    # way, default settings) and gunicorn (its FileWrapper, iterated when there is no fileno).
    "iris-service serve": lambda port: serve_args(port),
    "python -m waitress --call": lambda port: [
        sys.executable, "-m", "waitress", "--host=127.0.0.1", f"--port={port}", "--call", "iris_service:create_app"],
    "gunicorn": lambda port: [
        str(Path(sys.executable).with_name("gunicorn")), "-w", "1", "--threads", "2", "-b", f"127.0.0.1:{port}",
        "wsgi:app"],
}


@pytest.mark.server
@pytest.mark.parametrize("server", SERVERS)
def test_real_servers_send_a_large_answer_whole(server: str, iris_artifact: Path, tmp_path: Path, client):
    if server == "gunicorn" and os.name == "nt":
        pytest.skip("gunicorn runs on POSIX hosts only")
    batch = big_batch()
    expected = client.post("/predict", json=batch).data
    port = free_port()
    with run_server(SERVERS[server](port), server_env(iris_artifact, tmp_path), port, cwd=ROOT,
                    output=tmp_path / "server.log") as (base, _):
        with requests.Session() as session:
            for _ in range(2):  # twice on one keep-alive connection: the answer ends where it should
                # identity: requests asks for gzip by default, and the compressed answer is small.
                answer = session.post(f"{base}/predict", json=batch, headers={"Accept-Encoding": "identity"},
                                      timeout=60)
                assert answer.status_code == 200
                assert answer.headers["Content-Length"] == str(len(expected))
                assert answer.content == expected
            one = session.post(f"{base}/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}, timeout=10)
            assert one.json()["prediction"] == 0
