"""Request log: one JSON line per request, ids on every response, nothing secret logged."""

from __future__ import annotations

import logging
import re
import threading
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np
import orjson
import pytest
from conftest import RequestLogLines
from flask import Flask, g, request

from iris_service.cli.log_writer import configure_request_log, flush
from iris_service.rest.middleware.request_log import LOGGER_NAME, REQUEST_ID_HEADER, RequestLog, request_id
from iris_service.rest.state import MODEL, RESULT
from iris_service.runtime import Prediction
from iris_service.serving import InferResult

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def make_app(**config: object) -> Flask:
    """A stand-in for the REST layer: /predict notes the model and result the way ``state.infer`` does."""
    app = Flask(__name__)
    app.config.update({"TESTING": True, **config})
    RequestLog().init_app(app)

    @app.post("/predict")
    def predict() -> dict[str, object]:
        rows = request.get_json()["instances"]
        model = SimpleNamespace(name="iris", version="1", class_names=("setosa",))
        setattr(g, MODEL, model)
        setattr(g, RESULT, InferResult(model, len(rows), Prediction(classes=np.zeros(len(rows), dtype=np.int64)), {}))
        return {"predictions": ["setosa"] * len(rows), "request_id": g.request_id}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    return app


def with_error_handler(app: Flask) -> Flask:
    @app.errorhandler(RuntimeError)
    def on_error(exc: RuntimeError) -> tuple[dict[str, str], int]:
        return {"error": str(exc), "request_id": request_id()}, 500

    return app


def test_one_json_line_per_request_with_the_fields(log: RequestLogLines) -> None:
    client = make_app().test_client()
    before = datetime.now(timezone.utc)
    response = client.post("/predict", json={"instances": [[1, 2, 3, 4]] * 3})
    assert response.status_code == 200
    [record] = log.records()
    assert set(record) == {
        "time", "level", "request_id", "method", "path", "status", "duration_ms",
        "model", "model_version", "batch_size", "remote_addr",
    }  # fmt: skip
    assert record["request_id"] == response.headers[REQUEST_ID_HEADER] == response.get_json()["request_id"]
    assert GENERATED_ID.fullmatch(str(record["request_id"]))
    assert record["method"] == "POST" and record["path"] == "/predict" and record["status"] == 200
    assert record["model"] == "iris" and record["model_version"] == "1" and record["batch_size"] == 3
    assert record["remote_addr"] == "127.0.0.1"
    assert record["level"] == "INFO"
    assert isinstance(record["duration_ms"], float) and 0 <= record["duration_ms"] < 5000
    assert str(record["time"]).endswith("Z")
    logged = datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00"))
    assert abs((logged - before).total_seconds()) < 5


def test_requests_without_a_model_log_nulls(log: RequestLogLines) -> None:
    make_app().test_client().get("/nowhere")
    [record] = log.records()
    assert record["status"] == 404
    assert record["model"] is None and record["batch_size"] is None


def test_a_valid_request_id_is_echoed(log: RequestLogLines) -> None:
    rid = "abc-DEF_123.x" + "9" * 100
    response = make_app().test_client().post(
        "/predict", json={"instances": [[0]]}, headers={REQUEST_ID_HEADER: rid}
    )
    assert response.headers[REQUEST_ID_HEADER] == rid
    assert response.get_json()["request_id"] == rid
    assert log.records()[0]["request_id"] == rid


@pytest.mark.parametrize(
    "bad_id",
    ["a" * 129, "has space", "slash/here", "semi;colon", "ünïcode", "quote\"d", "<script>", ""],
)
def test_an_invalid_request_id_is_replaced(log: RequestLogLines, bad_id: str) -> None:
    response = make_app().test_client().post(
        "/predict", json={"instances": [[0]]}, headers={REQUEST_ID_HEADER: bad_id}
    )
    rid = response.headers[REQUEST_ID_HEADER]
    assert GENERATED_ID.fullmatch(rid)
    assert log.records()[0]["request_id"] == rid


def test_the_id_is_on_a_404(log: RequestLogLines) -> None:
    response = make_app().test_client().get("/nowhere", headers={REQUEST_ID_HEADER: "lost-1"})
    assert response.status_code == 404
    assert response.headers[REQUEST_ID_HEADER] == "lost-1"
    assert log.records()[0]["request_id"] == "lost-1"


def test_the_id_is_on_a_500_from_an_error_handler(log: RequestLogLines) -> None:
    response = with_error_handler(make_app()).test_client().get("/boom", headers={REQUEST_ID_HEADER: "err-1"})
    assert response.status_code == 500
    assert response.headers[REQUEST_ID_HEADER] == "err-1"
    assert response.get_json() == {"error": "boom", "request_id": "err-1"}
    [record] = log.records()
    assert record["status"] == 500 and record["request_id"] == "err-1" and record["level"] == "ERROR"
    assert log.levels == [logging.ERROR]


def test_the_id_is_on_flasks_own_500(log: RequestLogLines, monkeypatch: pytest.MonkeyPatch) -> None:
    """No handler at all: Flask's InternalServerError page still passes through after_request."""
    app = make_app(TESTING=False)
    monkeypatch.setattr(app.logger, "disabled", True)  # Flask logs the traceback; not our subject
    response = app.test_client().get("/boom")
    assert response.status_code == 500
    rid = response.headers[REQUEST_ID_HEADER]
    assert GENERATED_ID.fullmatch(rid)
    assert log.records()[0]["request_id"] == rid


def test_no_body_no_credentials_no_query_in_the_line(log: RequestLogLines) -> None:
    make_app().test_client().post(
        "/predict?api_key=QUERYSECRET",
        json={"instances": [[1]], "note": "BODYSECRET"},
        headers={"Authorization": "Bearer TOKENSECRET", "X-API-Key": "KEYSECRET"},
    )
    [line] = log.lines
    for secret in ("QUERYSECRET", "BODYSECRET", "TOKENSECRET", "KEYSECRET", "api_key", "Bearer"):
        assert secret not in line


def test_text_format_is_one_readable_line(log: RequestLogLines) -> None:
    make_app(LOG_FORMAT="text").test_client().post(
        "/predict", json={"instances": [[1], [2]]}, headers={REQUEST_ID_HEADER: "txt-1"}
    )
    [line] = log.lines
    assert re.fullmatch(
        r"\S+Z INFO txt-1 POST /predict 200 [0-9.]+ms client=127\.0\.0\.1 model=iris@1 rows=2", line
    ), line


def test_text_format_escapes_control_characters(log: RequestLogLines) -> None:
    make_app(LOG_FORMAT="text").test_client().get("/evil%0Afake%20line")
    [line] = log.lines
    assert "\n" not in line and "/evil\\nfake line" in line


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        ("1.2.3.4\nFAKE LINE", r"1.2.3.4\nFAKE\x20LINE"),
        ("1.2.3.4\r\n2026-01-01T00:00:00.000Z INFO forged", r"1.2.3.4\r\n2026-01-01T00:00:00.000Z\x20INFO\x20forged"),
        ("1.2.3.4\x85FAKE", r"1.2.3.4\x85FAKE"),
        ("1.2.3.4\u2028FAKE", r"1.2.3.4\u2028FAKE"),
        ("1.2.3.4\x1b[2K", r"1.2.3.4\x1b[2K"),
        ("1.2.3.4\\nnot-a-newline", r"1.2.3.4\\nnot-a-newline"),
    ],
    ids=["lf", "crlf", "nel", "line-separator", "terminal-escape", "backslash"],
)
def test_text_format_escapes_the_client_address(log: RequestLogLines, address: str, shown: str) -> None:
    """REMOTE_ADDR is a client's text behind a trusted proxy (waitress takes it from X-Forwarded-For)."""
    make_app(LOG_FORMAT="text").test_client().post(
        "/predict", json={"instances": [[1]]}, headers={REQUEST_ID_HEADER: "addr-1"},
        environ_overrides={"REMOTE_ADDR": address},
    )
    [line] = log.lines
    assert line.splitlines() == [line]
    match = re.fullmatch(r"\S+Z INFO addr-1 POST /predict 200 [0-9.]+ms client=(\S+) model=iris@1 rows=1", line)
    assert match is not None, line
    assert match.group(1) == shown


def test_json_format_keeps_the_client_address_on_one_line(log: RequestLogLines) -> None:
    make_app().test_client().post("/predict", json={"instances": [[1]]},
                                  environ_overrides={"REMOTE_ADDR": "1.2.3.4\nFAKE LINE"})
    [line] = log.lines
    assert "\n" not in line
    assert orjson.loads(line)["remote_addr"] == "1.2.3.4\nFAKE LINE"


def test_text_format_escapes_the_method(log: RequestLogLines) -> None:
    make_app(LOG_FORMAT="text").test_client().open("/predict", method="GET\nFAKE 200")
    [line] = log.lines
    assert line.splitlines() == [line]
    assert r" GET\nFAKE\x20200 /predict 405 " in line


def test_log_level_filters_lines(log: RequestLogLines) -> None:
    client = with_error_handler(make_app(LOG_LEVEL="WARNING")).test_client()
    client.post("/predict", json={"instances": [[1]]})
    client.get("/boom")
    assert [record["status"] for record in log.records()] == [500]


def test_init_app_twice_keeps_one_handler_and_each_apps_format(log: RequestLogLines) -> None:
    configure_request_log("INFO")
    json_client = make_app().test_client()
    text_client = make_app(LOG_FORMAT="text").test_client()
    configure_request_log("DEBUG")  # a second server start in the same process
    logger = logging.getLogger(LOGGER_NAME)
    ours = [h for h in logger.handlers if type(h).__module__ == "iris_service.cli.log_writer"]
    assert len(ours) == 1
    assert logger.propagate is False
    json_client.get("/nowhere")
    text_client.get("/nowhere")
    assert log.lines[0].startswith("{") and not log.lines[1].startswith("{")


def test_lines_reach_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_request_log("INFO")  # what the servers' entry points do
    make_app().test_client().get("/nowhere", headers={REQUEST_ID_HEADER: "to-stderr"})
    flush()  # lines are written by a background thread
    err = capsys.readouterr().err.strip().splitlines()
    assert [orjson.loads(line)["request_id"] for line in err] == ["to-stderr"]


@pytest.mark.parametrize("config", [{"LOG_FORMAT": "xml"}, {"LOG_LEVEL": "LOUD"}])
def test_bad_settings_fail_at_startup(config: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        make_app(**config)


def test_generated_ids_are_version_4_uuids() -> None:
    client = make_app().test_client()
    ids = {client.get("/nowhere").headers[REQUEST_ID_HEADER] for _ in range(50)}
    assert len(ids) == 50
    for rid in ids:
        parsed = uuid.UUID(rid)
        assert parsed.hex == rid and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_lines_from_many_threads_all_reach_stderr_once(capsys: pytest.CaptureFixture[str]) -> None:
    """The background writer loses nothing and keeps each line whole under concurrent requests."""
    configure_request_log("INFO")
    app = make_app()

    def send(worker: int) -> None:
        client = app.test_client()
        for i in range(25):
            client.get("/nowhere", headers={REQUEST_ID_HEADER: f"w{worker}-{i}"})

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    flush()
    ids = [orjson.loads(line)["request_id"] for line in capsys.readouterr().err.splitlines()]
    assert sorted(ids) == sorted(f"w{n}-{i}" for n in range(4) for i in range(25))
    for n in range(4):
        assert [rid for rid in ids if rid.startswith(f"w{n}-")] == [f"w{n}-{i}" for i in range(25)]
