"""OpenTelemetry tracing, configured only by the standard ``OTEL_*`` variables.

Started in each worker after the fork (``post_fork`` hook, or the app's lifespan when the
app runs outside gunicorn): a ``BatchSpanProcessor`` owns a background thread, and threads
do not survive ``fork()``. With no OTLP endpoint, or ``OTEL_SDK_DISABLED=true``, no provider
is installed and the middleware skips tracing entirely: zero per-request cost.

The server span itself is created by ``middleware.py`` through the OpenTelemetry API, not by
``opentelemetry-instrumentation-fastapi``: the instrumentation wraps the app in two more ASGI
layers and builds its attributes on every request, sampled or not (measured at about 40% of
throughput on these machines when this kit was specified); the README's performance section
has what the lean span costs.
"""

from __future__ import annotations

import os
from random import getrandbits
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags

_SUPPORTED_PROTOCOLS = ("http/protobuf",)
_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT
_provider: Any = None
_spans: ServerSpans | None = None


class PresetIdGenerator(RandomIdGenerator):
    """Random ids, except that the next trace id can be handed in (see ``ServerSpans``)."""

    def __init__(self) -> None:
        self.preset = 0

    def generate_trace_id(self) -> int:
        preset = self.preset
        if preset:
            self.preset = 0
            return preset
        return super().generate_trace_id()


class ServerSpans:
    """Starts the one server span per request, cheaply when it will not be sampled.

    With a trace-id-ratio sampler (``traceidratio``/``parentbased_traceidratio``), a root
    span's fate is ``trace_id & (2**64 - 1) < bound`` — a pure function of the trace id.
    The id is drawn here first: an unsampled root (90% at ratio 0.1) becomes a
    ``NonRecordingSpan`` without the SDK's ``start_span`` (~18 us per request measured
    under wrk, ``make bench --breakdown``); a sampled one hands the same id to the SDK
    through ``PresetIdGenerator``, whose sampler then reaches the same decision. Spans
    with a remote parent, and every other sampler, always go through the SDK.
    """

    def __init__(self, tracer: trace.Tracer, ids: PresetIdGenerator, rate: float | None) -> None:
        self._tracer = tracer
        self._ids = ids
        self._bound = None if rate is None else TraceIdRatioBased.get_bound_for_rate(rate)
        self._flags = TraceFlags(
            TraceFlags.DEFAULT | (TraceFlags.RANDOM_TRACE_ID if ids.is_trace_id_random() else 0)
        )

    def start(self, name: str, parent: Context | None) -> Span:
        if parent is None and self._bound is not None:
            trace_id = self._ids.generate_trace_id()
            if trace_id & _TRACE_ID_LIMIT >= self._bound:
                span_id = getrandbits(64) or 1
                return NonRecordingSpan(
                    SpanContext(trace_id, span_id, is_remote=False, trace_flags=self._flags)
                )
            self._ids.preset = trace_id
        return self._tracer.start_span(name, context=parent, kind=SpanKind.SERVER)


def _ratio_from_env() -> float | None:
    """The root sampling rate when the configured sampler is ratio-based, as the SDK reads it."""
    if os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() not in _RATIO_SAMPLERS:
        return None
    try:
        rate = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", ""))
    except ValueError:
        return 1.0  # the SDK's own fallback
    return rate if 0.0 <= rate <= 1.0 else None  # out of range: let the SDK decide


def tracing_config_error() -> str | None:
    """Validate the ``OTEL_*`` variables the service cannot honour; None when fine."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = os.environ.get(name, "").strip()
        if protocol and protocol not in _SUPPORTED_PROTOCOLS:
            return f"{name}: only {', '.join(_SUPPORTED_PROTOCOLS)} is supported (got {protocol!r})"
    return None


def tracing_requested() -> bool:
    """True when an OTLP endpoint is set and the SDK is not disabled."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def configure_tracing() -> ServerSpans | None:
    """Install a tracer provider in this process (idempotent); None when tracing is off."""
    global _provider, _spans
    if not tracing_requested():
        return None
    if _provider is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # Resource.create() reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the sampler
        # comes from OTEL_TRACES_SAMPLER(_ARG), the exporter from OTEL_EXPORTER_OTLP_*.
        # process.pid tells the workers of one pod apart.
        ids = PresetIdGenerator()
        provider = TracerProvider(
            resource=Resource.create({"process.pid": os.getpid()}), id_generator=ids
        )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _provider = provider
        _spans = ServerSpans(trace.get_tracer("app.platform.middleware"), ids, _ratio_from_env())
    return _spans


def shutdown_tracing() -> None:
    """Flush pending spans and stop the exporter thread (called at worker shutdown)."""
    global _provider, _spans
    if _provider is not None:
        _provider.shutdown()
        _provider = _spans = None
