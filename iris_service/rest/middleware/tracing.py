"""Optional OpenTelemetry tracing: a span per request and child spans around inference.

The packages come with the ``otel`` extra (opentelemetry-api, opentelemetry-sdk,
opentelemetry-instrumentation-flask). Nothing here imports them unless
``TRACING_ENABLED`` is set, and ``span()`` costs one dict lookup when tracing is off.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, has_app_context

from ...extras import install_hint
from ...settings import DEFAULT_EXCLUDED_URLS
from ..state import EXTENSION_KEY, state_of

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

TRACER_NAME = "iris_service"

# Stateless and reusable, so one instance serves every call when tracing is off.
_NO_SPAN: AbstractContextManager[None] = nullcontext()


@dataclass(frozen=True)
class TracingState:
    """What a traced app keeps in its state's ``tracing``; ``span`` is what the data plane calls."""

    tracer: Tracer

    def span(self, name: str) -> AbstractContextManager[Any]:
        return self.tracer.start_as_current_span(name)


def _tracing() -> TracingState | None:
    state = current_app.extensions.get(EXTENSION_KEY)
    return state.tracing if state is not None else None


def span(name: str) -> AbstractContextManager[Any]:
    """A child span of the current one (e.g. "decode", "predict", "encode").

    A shared no-op context when tracing is off, the packages are missing or no app
    is active (a batching thread), so inference code can call it unconditionally.
    """
    if not has_app_context():
        return _NO_SPAN
    tracing = _tracing()
    if tracing is None:
        return _NO_SPAN
    return tracing.span(name)


def current_trace_id() -> str | None:
    """The 32-hex trace id of the current span, for the request log line."""
    if not has_app_context() or _tracing() is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def _default_provider() -> TracerProvider:
    """The global provider if the deployment configured one, else a local SDK one.

    Without any SDK provider spans are non-recording and carry no trace id, so the
    log lines could not be correlated; the local provider gives ids (and continues an
    incoming ``traceparent``) but exports nothing until an exporter is configured.
    """
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if not isinstance(provider, trace.ProxyTracerProvider):
        return provider
    try:
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    except ImportError:
        return provider
    return SdkTracerProvider()


class Tracing:
    """Flask extension: OpenTelemetry request spans when ``TRACING_ENABLED``."""

    def __init__(self, app: Flask | None = None, *, tracer_provider: TracerProvider | None = None) -> None:
        self.tracer_provider = tracer_provider
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, tracer_provider: TracerProvider | None = None) -> None:
        """Instrument the app with the official FlaskInstrumentor, if enabled and installed.

        Register it before the other extensions: its before_request hook opens the
        request span that theirs and the views' spans nest under.
        """
        app.config.setdefault("TRACING_ENABLED", False)
        app.config.setdefault("TRACING_EXCLUDED_URLS", [DEFAULT_EXCLUDED_URLS])
        if not app.config["TRACING_ENABLED"]:
            return
        try:
            from opentelemetry.instrumentation.flask import FlaskInstrumentor
        except ImportError:
            app.logger.warning(
                "TRACING_ENABLED is set but OpenTelemetry is not installed, so tracing is off: %s", install_hint("otel")
            )
            return
        provider = tracer_provider or self.tracer_provider or _default_provider()
        FlaskInstrumentor().instrument_app(
            app,
            tracer_provider=provider,
            excluded_urls=_joined(app.config["TRACING_EXCLUDED_URLS"]),
        )
        # The data plane gets this state's span factory when ModelStore builds it.
        state_of(app).tracing = TracingState(tracer=provider.get_tracer(TRACER_NAME))


def _joined(patterns: str | list[str]) -> str:
    """The patterns as OpenTelemetry takes them: one comma-separated string (create_app gives a list)."""
    return patterns if isinstance(patterns, str) else ",".join(patterns)
