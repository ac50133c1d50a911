"""Tracing: a request span with decode/predict/encode children, its trace id in the log line."""

from __future__ import annotations

import logging
import sys

import orjson
import pytest
from conftest import RequestLogLines
from flask import Flask, g

from iris_service.rest.middleware.request_log import RequestLog
from iris_service.rest.middleware.tracing import Tracing, current_trace_id, span
from iris_service.rest.state import EXTENSION_KEY

pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is not installed")
pytest.importorskip("opentelemetry.instrumentation.flask", reason="the otel extra is not installed")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id  # noqa: E402

STEPS = ("decode", "predict", "encode")


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    # A provider per test, passed in: the global one can be set only once per process.
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def lines(log: RequestLogLines) -> list[str]:
    """The request log lines (the shared ``log`` capture, as plain strings)."""
    return log.lines


def make_app(provider: TracerProvider | None, **config: object) -> Flask:
    """Extensions in create_app's order (tracing first), and a /predict using ``span``."""
    app = Flask(__name__)
    app.config.update({"TESTING": True, "TRACING_ENABLED": True, **config})
    Tracing(tracer_provider=provider).init_app(app)
    RequestLog().init_app(app)

    @app.post("/predict")
    def predict() -> dict[str, str | None]:
        g.model_name, g.model_version, g.batch_size = "iris", "1", 1
        for step in STEPS:
            with span(step):
                pass
        return {"trace_id": current_trace_id()}

    @app.get("/health/live")
    def live() -> dict[str, str]:
        return {"status": "ok"}

    return app


def test_request_span_with_three_children_and_trace_id_in_the_log(
    provider: TracerProvider, exporter: InMemorySpanExporter, lines: list[str]
) -> None:
    response = make_app(provider).test_client().post("/predict", json={})
    assert response.status_code == 200

    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"POST /predict", *STEPS}
    request_span = spans["POST /predict"]
    assert request_span.kind == SpanKind.SERVER
    assert request_span.attributes["http.route"] == "/predict"
    trace_id = request_span.context.trace_id
    for step in STEPS:
        assert spans[step].parent.span_id == request_span.context.span_id
        assert spans[step].context.trace_id == trace_id
    assert spans["decode"].end_time <= spans["predict"].start_time <= spans["encode"].start_time

    [line] = lines
    assert orjson.loads(line)["trace_id"] == format_trace_id(trace_id) == response.get_json()["trace_id"]


def test_an_incoming_traceparent_is_continued(
    provider: TracerProvider, exporter: InMemorySpanExporter, lines: list[str]
) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    make_app(provider).test_client().post(
        "/predict", json={}, headers={"traceparent": f"00-{trace_id}-{parent_id}-01"}
    )
    request_span = next(s for s in exporter.get_finished_spans() if s.name == "POST /predict")
    assert format_trace_id(request_span.context.trace_id) == trace_id
    assert format_span_id(request_span.parent.span_id) == parent_id
    assert orjson.loads(lines[0])["trace_id"] == trace_id


def test_probes_are_not_traced(provider: TracerProvider, exporter: InMemorySpanExporter, lines: list[str]) -> None:
    make_app(provider).test_client().get("/health/live")
    assert exporter.get_finished_spans() == ()
    assert "trace_id" not in orjson.loads(lines[0])


def test_the_data_plane_opens_its_steps_with_the_tracing_span_factory(
    provider: TracerProvider, exporter: InMemorySpanExporter, iris_artifact
) -> None:
    """ModelStore builds the data plane with the tracing state's span factory: decode, predict, encode."""
    from iris_service import ModelStore
    from iris_service.rest.blueprints import predictions

    app = make_app(provider)
    app.config["MODEL_PATH"] = str(iris_artifact)
    ModelStore().init_app(app)
    app.register_blueprint(predictions.blp, url_prefix="/ml")
    assert app.test_client().post("/ml/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).status_code == 200
    names = [s.name for s in exporter.get_finished_spans()]
    assert names[:3] == ["decode", "predict", "encode"] and len(names) == 4  # and the request's own span


def test_without_a_provider_the_log_still_gets_trace_ids(lines: list[str]) -> None:
    """No global SDK provider is configured in the tests: a local one still makes ids."""
    make_app(None).test_client().post("/predict", json={})
    assert len(orjson.loads(lines[0])["trace_id"]) == 32


def test_tracing_off_is_a_shared_no_op(lines: list[str]) -> None:
    app = make_app(None, TRACING_ENABLED=False)
    assert app.extensions[EXTENSION_KEY].tracing is None
    with app.test_request_context():
        assert span("predict") is span("encode")
    assert span("outside any app") is span("predict")
    app.test_client().post("/predict", json={})
    assert "trace_id" not in orjson.loads(lines[0])


def test_missing_packages_turn_tracing_off_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, lines: list[str]
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.instrumentation.flask", None)
    with caplog.at_level(logging.WARNING):
        app = make_app(None)
    assert app.extensions[EXTENSION_KEY].tracing is None
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "TRACING_ENABLED is set but OpenTelemetry is not installed, so tracing is off: pip install "
        "'iris-service[otel]' (from a checkout: pip install -e '.[otel]')"
    ]
    assert app.test_client().post("/predict", json={}).status_code == 200
    assert "trace_id" not in orjson.loads(lines[0])
