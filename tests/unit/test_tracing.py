"""The server-span fast path: unsampled roots skip the SDK, decisions stay the sampler's."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio, TraceIdRatioBased

from app.platform.tracing import PresetIdGenerator, ServerSpans, _ratio_from_env

LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT


def spans_for(rate: float) -> tuple[ServerSpans, InMemorySpanExporter]:
    ids = PresetIdGenerator()
    provider = TracerProvider(sampler=ParentBasedTraceIdRatio(rate), id_generator=ids)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return ServerSpans(provider.get_tracer("t"), ids, rate), exporter


def test_root_decisions_match_the_ratio_sampler() -> None:
    rate = 0.25
    spans, exporter = spans_for(rate)
    bound = TraceIdRatioBased.get_bound_for_rate(rate)
    started = [spans.start("GET /x", None) for _ in range(4000)]
    recorded = [s for s in started if s.is_recording()]
    skipped = [s for s in started if not s.is_recording()]
    for span in started:
        span.end()
    # Every decision is the one TraceIdRatioBased makes for that trace id.
    assert all(s.get_span_context().trace_id & LIMIT < bound for s in recorded)
    assert all(s.get_span_context().trace_id & LIMIT >= bound for s in skipped)
    assert 0.2 < len(recorded) / len(started) < 0.3
    # Sampled spans reach the exporter with the trace id drawn by the fast path.
    exported = {s.context.trace_id for s in exporter.get_finished_spans()}
    assert exported == {s.get_span_context().trace_id for s in recorded}
    for span in skipped:
        ctx = span.get_span_context()
        assert ctx.is_valid and not ctx.trace_flags.sampled and not ctx.is_remote


def test_remote_parent_goes_through_the_sdk() -> None:
    spans, exporter = spans_for(0.0)  # would drop every root
    parent = extract({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    span = spans.start("GET /x", parent)
    assert span.is_recording()  # the parent's sampled flag wins over the 0.0 ratio
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert format(finished.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert finished.parent is not None and finished.parent.span_id == 0x00F067AA0BA902B7


def test_preset_is_used_once() -> None:
    ids = PresetIdGenerator()
    ids.preset = 42
    assert ids.generate_trace_id() == 42
    assert ids.generate_trace_id() != 42


@pytest.mark.parametrize(
    ("sampler", "arg", "expected"),
    [
        ("parentbased_traceidratio", "0.1", 0.1),
        ("traceidratio", "1", 1.0),
        ("traceidratio", "nonsense", 1.0),  # the SDK's own fallback
        ("parentbased_always_on", "", None),
        ("traceidratio", "7", None),  # out of range: the SDK decides
    ],
)
def test_ratio_from_env(
    monkeypatch: pytest.MonkeyPatch, sampler: str, arg: str, expected: float | None
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    assert _ratio_from_env() == expected


def test_global_provider_untouched() -> None:
    # spans_for builds private providers; the process-wide one stays the API default.
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
