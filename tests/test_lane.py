"""The row lane (``rest/lane.py``) answers exactly as Flask's path does, and steps aside whenever it could not.

The proof is side by side on one app: the same request through the app (lane
first) and through the Flask app behind the lane must give the same status,
header list, body, log line and counters, for bodies over the whole input
domain (extreme floats, wrong types and shapes, malformed JSON) and the
headers that change an answer.
"""
from __future__ import annotations

import io
import json
from contextlib import nullcontext

import orjson
import pytest
from conftest import KNOWN_ROWS, create_app_for_test
from flask import request_started
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client, EnvironBuilder

from iris_service.rest.lane import RowLane
from iris_service.rest.state import state_of

RID = "lane-parity-1"
ROW = [5.1, 3.5, 1.4, 0.2]

numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 1.7976931348623157e308]),
)
values = st.one_of(numbers, numbers, st.booleans(), st.none(), st.text(max_size=5), st.lists(numbers, max_size=2))
rows = st.one_of(
    st.lists(numbers, min_size=4, max_size=4),
    st.lists(values, max_size=6),
    st.dictionaries(st.sampled_from(["sepal_length", "sepal_width", "petal_length", "petal_width", "x"]), numbers,
                    max_size=5),
)
bodies = st.one_of(
    rows.map(lambda row: {"features": row}),
    st.lists(st.lists(numbers, min_size=4, max_size=4), min_size=1, max_size=5).map(lambda b: {"instances": b}),
    st.fixed_dictionaries({"features": rows}, optional={"instances": st.just([ROW]), "extra": values}),
    st.one_of(values, st.just({}), st.just([])),
)
raw_bodies = st.one_of(
    bodies.map(lambda body: json.dumps(body).encode()),  # the standard library writes any integer
    st.sampled_from([b"", b"   ", b"{", b'{"features": [1, 2, 3, NaN]}', b'{"features": [5.1, 3.5, 1.4, 0.2]}xx',
                     b"\xff\xfe", b'{"features": [5.1,3.5,1.4,0.2], "features": [1,1,1,1]}']),
)
tensor = st.fixed_dictionaries(
    {"name": st.sampled_from(["input-0", "sepal_length", "x"]),
     "shape": st.one_of(st.just([1, 4]), st.lists(st.integers(-1, 5), max_size=3)),
     "datatype": st.sampled_from(["FP64", "FP32", "INT64", "BOOL", "BYTES", "fp64", "X"]),
     "data": st.one_of(st.lists(numbers, min_size=4, max_size=4), st.lists(values, max_size=8),
                       st.just([ROW]))},
    optional={"parameters": st.one_of(st.just({}), st.just({"binary_data_size": 32}))},
)
output = st.fixed_dictionaries(
    {"name": st.sampled_from(["predict", "predict_proba", "x"])},
    optional={"parameters": st.fixed_dictionaries({"binary_data": st.booleans()})},
)
v2_bodies = st.fixed_dictionaries(
    {"inputs": st.one_of(st.lists(tensor, min_size=1, max_size=2), values)},
    optional={"outputs": st.lists(output, max_size=3), "id": st.one_of(st.text(max_size=4), numbers),
              "parameters": st.fixed_dictionaries({"binary_data_output": st.one_of(st.booleans(), values)})},
)
raw_v2_bodies = st.one_of(v2_bodies.map(lambda body: json.dumps(body).encode()), raw_bodies)
v2_paths = st.sampled_from(["/v2/models/iris/infer", "/v2/models/iris/versions/1/infer",
                            "/v2/models/iris/versions/9/infer", "/v2/models/nope/infer"])
headers = st.fixed_dictionaries({}, optional={
    "X-Request-ID": st.sampled_from([RID, "bad id", "x" * 129, ""]),
    "Accept-Encoding": st.sampled_from(["gzip", "gzip;q=0", "br", "*", "identity, gzip;q=0.5"]),
})


@pytest.fixture
def make_app(iris_artifact, monkeypatch, tmp_path):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    return lambda **overrides: create_app_for_test({"MODEL_PATH": str(iris_artifact), **overrides})


def _counters(app) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = state_of(app).metrics.registry
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in registry.collect()
        if metric.name in ("iris_http_requests", "iris_predictions", "iris_prediction_batch_size")
        for sample in metric.samples
        if not sample.name.endswith(("_created", "_sum"))
    }


def _delta(before: dict, after: dict) -> dict:
    return {key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key, 0.0)}


def _same_line(record: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in record.items() if k not in ("time", "duration_ms")}


def _through(client: Client, app, log, body: bytes, extra: dict[str, str], path: str = "/predict"):
    """One POST to ``path``: the answer, its log record and the counters it moved."""
    before = _counters(app)
    log.lines.clear()
    response = client.post(path, data=body, content_type="application/json", headers=extra,
                           environ_base={"REMOTE_ADDR": "192.0.2.7"})
    [line] = log.lines
    return response, orjson.loads(line), _delta(before, _counters(app))


def _normalised(response, record) -> tuple:
    header_list = response.headers.to_wsgi_list()
    rid = response.headers["X-Request-ID"]
    assert record["request_id"] == rid
    if rid != RID:  # a new id: 32 hex digits on both sides, equal only in shape
        assert len(rid) == 32 and int(rid, 16) >= 0
        header_list = [(k, "<new>" if k == "X-Request-ID" else v) for k, v in header_list]
        record = {**record, "request_id": "<new>"}
    return response.status_code, header_list, response.get_data(), _same_line(record)


@pytest.fixture(scope="module")
def parity_app(iris_artifact, tmp_path_factory):
    """One app for every example; a small gzip threshold, so some answers take the compression branch too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path_factory.mktemp("lane") / "instance"))
        return create_app_for_test({"MODEL_PATH": str(iris_artifact), "COMPRESS_MIN_SIZE": 150})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=raw_bodies, extra=headers)
@example(body=orjson.dumps({"features": ROW}), extra={"X-Request-ID": RID, "Accept-Encoding": "gzip"})
@example(body=orjson.dumps({"instances": [ROW] * 3}), extra={})
def test_the_lane_answers_every_body_exactly_as_flask_does(parity_app, log, body, extra) -> None:
    app = parity_app
    lane_response, lane_record, lane_counts = _through(Client(app.wsgi_app), app, log, body, extra)
    flask_response, flask_record, flask_counts = _through(Client(app.wsgi_app.wsgi_app), app, log, body, extra)
    assert _normalised(lane_response, lane_record) == _normalised(flask_response, flask_record)
    assert lane_counts == flask_counts


V2_ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=raw_v2_bodies, extra=headers, path=v2_paths)
@example(body=orjson.dumps(V2_ROW), extra={"X-Request-ID": RID}, path="/v2/models/iris/infer")
@example(body=orjson.dumps({**V2_ROW, "outputs": [{"name": "predict_proba"}]}), extra={"Accept-Encoding": "gzip"},
         path="/v2/models/iris/versions/1/infer")
@example(body=orjson.dumps({**V2_ROW, "parameters": {"binary_data_output": True},
                            "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}),
         extra={"Accept-Encoding": "gzip"}, path="/v2/models/iris/infer")
def test_the_lane_answers_every_v2_request_exactly_as_flask_does(parity_app, log, body, extra, path) -> None:
    app = parity_app
    lane_response, lane_record, lane_counts = _through(Client(app.wsgi_app), app, log, body, extra, path)
    flask_response, flask_record, flask_counts = _through(Client(app.wsgi_app.wsgi_app), app, log, body, extra,
                                                          path)
    assert _normalised(lane_response, lane_record) == _normalised(flask_response, flask_record)
    assert lane_counts == flask_counts


def test_the_lane_serves_the_plain_row_without_flask(make_app, log, monkeypatch) -> None:
    app = make_app()
    dispatched = []
    original = app.full_dispatch_request
    monkeypatch.setattr(app, "full_dispatch_request", lambda: dispatched.append(1) or original())
    client = app.test_client()
    for row, expected, _ in KNOWN_ROWS:
        response = client.post("/predict", json={"features": row}, headers={"X-Request-ID": RID})
        assert response.status_code == 200
        assert response.get_json()["prediction"] == expected
        assert log.by_id(RID)["status"] == 200
        log.lines.clear()
    assert dispatched == []
    assert state_of(app).metrics.in_flight._value.get() == 0
    v2_row = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
    answer = client.post("/v2/models/iris/infer", json=v2_row).get_json()
    assert answer["outputs"][0]["data"] == [0] and answer["model_name"] == "iris"
    binary = client.post("/v2/models/iris/versions/1/infer",
                         json={**v2_row, "outputs": [{"name": "predict", "parameters": {"binary_data": True}}]})
    assert binary.status_code == 200 and binary.content_type == "application/octet-stream"
    header_length = int(binary.headers["Inference-Header-Content-Length"])
    assert orjson.loads(binary.data[:header_length])["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert binary.data[header_length:] == (0).to_bytes(8, "little")
    assert dispatched == []
    # Refused bodies are Flask's: its error answer, once.
    response = client.post("/predict", json={"features": [1, 2]})
    assert response.status_code == 422
    assert response.get_json()["message"].startswith("Expected 4 features")
    assert dispatched == [1]


@pytest.mark.parametrize("change", ["before_request", "after_request", "signal", "api_keys", "cors", "cookie",
                                    "query", "charset"])
def test_the_lane_steps_aside_for_anything_flask_must_see(make_app, change) -> None:
    overrides = {"api_keys": {"API_KEYS": "k1"}, "cors": {"CORS_ORIGINS": "https://a.example"}}.get(change, {})
    app = make_app(**overrides)
    seen: list[str] = []
    if change == "before_request":
        app.before_request(lambda: seen.append("before"))
    elif change == "after_request":
        app.after_request(lambda response: seen.append("after") or response)
    client = app.test_client()
    kwargs: dict[str, object] = {"json": {"features": ROW}}
    if change == "cookie":
        client.set_cookie("session", "x")
    path = "/predict?x=1" if change == "query" else "/predict"
    if change == "charset":
        kwargs = {"data": orjson.dumps({"features": ROW}), "content_type": "application/json; charset=utf-8"}

    def started(sender, **extra):
        seen.append("signal")

    with request_started.connected_to(started, app) if change == "signal" else nullcontext():
        response = client.post(path, **kwargs)
    if change == "api_keys":
        assert response.status_code == 401
        response = client.post(path, headers={"X-API-Key": "k1"}, **kwargs)
    assert response.status_code == 200 and response.get_json()["prediction"] == 0
    expected = {"before_request": ["before"], "after_request": ["after"], "signal": ["signal"]}.get(change, [])
    assert seen == expected
    if change == "cors":
        assert "Origin" in response.headers["Vary"]


def test_a_hook_the_lane_does_not_play_turns_it_off_at_start(make_app) -> None:
    app = make_app()
    app.before_request(lambda: None)
    assert RowLane(app.wsgi_app, app).views == {}
    fresh = make_app()
    assert set(RowLane(fresh.wsgi_app.wsgi_app, fresh).views) == {"predictions.Predict", "v2.Infer", "v2.InferVersion"}


def test_a_short_body_gets_flasks_answer_from_the_bytes_the_lane_read(make_app, log) -> None:
    app = make_app()
    body = orjson.dumps({"features": ROW})
    answers = []
    for wsgi in (app.wsgi_app, app.wsgi_app.wsgi_app):
        environ = EnvironBuilder(path="/predict", method="POST", content_type="application/json",
                                 headers={"X-Request-ID": RID}).get_environ()
        environ["CONTENT_LENGTH"] = str(len(body) + 5)
        environ["wsgi.input"] = io.BytesIO(body)
        statuses: list[str] = []
        chunks = wsgi(environ, lambda status, headers, exc_info=None, seen=statuses: seen.append(status))
        answers.append((statuses, b"".join(chunks)))
    assert answers[0] == answers[1]
    assert answers[0][0][0].startswith("400")


def test_a_large_answer_goes_to_the_servers_file_wrapper(make_app, monkeypatch) -> None:
    import iris_service.rest.lane as lane_module

    monkeypatch.setattr(lane_module, "FILE_WRAPPER_MIN_SIZE", 10)
    app = make_app()
    wrapped = []

    def file_wrapper(file, size):
        wrapped.append(size)
        return iter([file.read()])

    environ = EnvironBuilder(path="/predict", method="POST", json={"features": ROW}).get_environ()
    environ["wsgi.file_wrapper"] = file_wrapper
    body = b"".join(app.wsgi_app(environ, lambda status, headers, exc_info=None: None))
    assert orjson.loads(body)["prediction"] == 0
    assert wrapped == [len(body)]


def test_the_payload_log_records_a_lane_answer_under_its_request_id(payload_app, tmp_path) -> None:
    app = payload_app(PAYLOAD_LOG=str(tmp_path / "payloads.jsonl"))
    response = app.test_client().post("/predict", json={"features": ROW}, headers={"X-Request-ID": RID})
    assert response.status_code == 200
    assert state_of(app).payload_log.flush()
    [record] = [orjson.loads(line) for line in (tmp_path / "payloads.jsonl").read_text().splitlines()]
    assert record["request_id"] == RID
    assert record["inputs"] == [ROW]
