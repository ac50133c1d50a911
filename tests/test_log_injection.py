"""A client's text never writes a log line of its own: addresses, versions and paths are escaped.

Behind a trusted proxy waitress takes the client address from ``X-Forwarded-For``;
the admin reload logs the ``?version=`` it was asked for; an unhandled error logs
the path. Each is a client's text, and each must stay inside its one line.
"""
from __future__ import annotations

import logging
import re
import socket
from pathlib import Path

import pytest
from conftest import create_app_for_test, free_port, run_server, serve_args, server_env
from flask import Flask

from iris_service.rest.errors import register_error_handlers
from iris_service.rest.middleware.request_log import printable

TOKEN = "s3cret-admin-token"
#: A request log line in the text format; the request id is the third word.
TEXT_LINE = re.compile(r"\S+Z (?:INFO|ERROR) (\S+) (\S+) (\S+) (\d{3}) [0-9.]+ms client=(\S+)")


def send_raw(port: int, forwarded_for: bytes, request_id: str) -> bytes:
    """One GET with a raw ``X-Forwarded-For`` value (requests refuses control bytes); the status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(
            b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: " + request_id.encode()
            + b"\r\nX-Forwarded-For: " + forwarded_for + b"\r\nConnection: close\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


@pytest.mark.server
def test_forwarded_client_address_cannot_forge_text_log_lines(iris_artifact: Path, tmp_path: Path) -> None:
    """waitress refuses a bare LF or CR in a header (400, before the app); what it accepts is escaped.

    It accepts obs-text (NEL, U+0085, which ``splitlines`` and some viewers break
    lines on), tabs, spaces, an obs-fold continuation and quoted pairs: each request
    still logs exactly one line, its address escaped.
    """
    port, output = free_port(), tmp_path / "proxied.log"
    args = serve_args(port, "--server", "waitress", "--trusted-proxy", "127.0.0.1", "--trusted-proxy-headers",
                      "x-forwarded-for")
    # UTF-8 stderr, so an unescaped NEL would reach the file as the character it is.
    env = server_env(iris_artifact, tmp_path, IRIS_SERVICE_LOG_FORMAT="text", PYTHONIOENCODING="utf-8")
    refused = {"lf": b"1.2.3.4\nFAKE LINE", "cr": b"1.2.3.4\rFAKE LINE", "crlf-in-value": b"1.2.3.4\r\nFAKE LINE"}
    accepted = {
        "nel": (b"1.2.3.4\x85FAKE LINE", r"1.2.3.4\x85FAKE\x20LINE"),
        "tab": (b"1.2.3.4\tFAKE", r"1.2.3.4\tFAKE"),
        "spaces": (b"1.2.3.4 200 0.1ms client=forged", r"1.2.3.4\x20200\x200.1ms\x20client=forged"),
        "fold": (b"1.2.3.4\r\n FAKE LINE", r"1.2.3.4\x20FAKE\x20LINE"),
        "quoted": (b'"1.2.3.4\\\x85FAKE"', r"1.2.3.4\x85FAKE"),
    }
    with run_server(args, env, port, output=output):
        statuses = {rid: send_raw(port, value, rid) for rid, value in refused.items()}
        statuses.update({rid: send_raw(port, value, rid) for rid, (value, _) in accepted.items()})
        assert send_raw(port, b"203.0.113.7", "plain") == b"HTTP/1.1 200 OK"
    # "crlf-in-value" ends the header at the CR LF: "FAKE LINE" is then a header line without a colon.
    assert {rid: statuses[rid] for rid in refused} == dict.fromkeys(refused, b"HTTP/1.0 400 Bad Request")
    assert {rid: statuses[rid] for rid in accepted} == dict.fromkeys(accepted, b"HTTP/1.1 200 OK")
    lines = output.read_bytes().decode("utf-8").splitlines()
    assert not [line for line in lines if line.startswith("FAKE")]
    logged = {m.group(1): m for m in map(TEXT_LINE.match, lines) if m is not None and m.group(3) == "/health/live"}
    per_id = {rid: [line for line in lines if f" {rid} GET " in line] for rid in [*refused, *accepted, "plain"]}
    assert {rid: len(found) for rid, found in per_id.items()} == {
        **dict.fromkeys(refused, 0), **dict.fromkeys(accepted, 1), "plain": 1}
    assert {rid: logged[rid].group(5) for rid in accepted} == {rid: shown for rid, (_, shown) in accepted.items()}
    assert logged["plain"].group(5) == "203.0.113.7"
    for rid in accepted:
        assert TEXT_LINE.fullmatch(per_id[rid][0]), per_id[rid][0]


@pytest.mark.parametrize(
    ("query", "shown"),
    [("1%0AFAKE", r"1\nFAKE"), ("1%0D%0AFAKE", r"1\r\nFAKE"), ("1%C2%85FAKE", r"1\x85FAKE"),
     ("1%E2%80%A8FAKE", r"1\u2028FAKE")],
    ids=["lf", "crlf", "nel", "line-separator"],
)
def test_admin_reload_version_is_escaped_in_the_warning(
    iris_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    query: str, shown: str,
) -> None:
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path))
    client = create_app_for_test({"MODEL_PATH": str(iris_artifact), "ADMIN_TOKEN": TOKEN}).test_client()
    with caplog.at_level(logging.WARNING, logger="iris_service.registry"):
        response = client.post(f"/admin/models/iris/reload?version={query}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404
    # The answer quotes the version as the client sent it (repr-escaped, in JSON).
    version = shown.encode().decode("unicode_escape")
    assert response.get_json()["message"] == f"Model 'iris' has no version {version!r}; its artifact is version '1'."
    [record] = [r for r in caplog.records if r.name == "iris_service.registry"]
    message = record.getMessage()
    assert message.splitlines() == [message]
    assert message == (f"loading model iris (version {shown}) failed, the old version keeps serving: "
                       + printable(response.get_json()["message"]))
    # The model keeps serving.
    assert client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).get_json()["label"] == "setosa"


def test_unhandled_error_log_escapes_the_path(caplog: pytest.LogCaptureFixture) -> None:
    app = Flask(__name__)
    register_error_handlers(app)

    @app.get("/boom/<rest>")
    def boom(rest: str) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="iris_service.errors"):
        response = app.test_client().get("/boom/x%0A2026-01-01T00:00:00.000Z INFO forged")
    assert response.status_code == 500
    assert response.get_json() == {"code": 500, "status": "Internal Server Error",
                                   "message": "Internal server error; the error was logged."}
    [record] = [r for r in caplog.records if r.name == "iris_service.errors"]
    message = record.getMessage()
    assert message.splitlines() == [message]
    assert message == r"unhandled error on GET /boom/x\n2026-01-01T00:00:00.000Z INFO forged (request id -)"
