"""The server-span fast path: the sampler's decisions, the SDK's ids, flags and fields."""

from __future__ import annotations

import random

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind

from app.platform.tracing import ServerSpan, ServerSpans, _sampling_plan

SAMPLERS: dict[str, Sampler] = {
    "always_on": ALWAYS_ON,
    "always_off": ALWAYS_OFF,
    "traceidratio": TraceIdRatioBased(0.3),
    "parentbased_always_on": DEFAULT_ON,
    "parentbased_always_off": DEFAULT_OFF,
    "parentbased_traceidratio": ParentBasedTraceIdRatio(0.3),
}


class ScriptedIds(RandomIdGenerator):
    """Hands out a fixed sequence of ids, so the fast path and the SDK can be compared."""

    def __init__(self, ids: list[int]) -> None:
        self._ids = iter(ids)

    def generate_trace_id(self) -> int:
        return next(self._ids)

    def generate_span_id(self) -> int:
        return next(self._ids) & (2**64 - 1) or 1


def provider_for(
    sampler: Sampler, ids: RandomIdGenerator | None = None, limits: SpanLimits | None = None
) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(sampler=sampler, id_generator=ids, span_limits=limits)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def parents() -> list[object]:
    """No parent, and remote parents sampled and not, with a trace state."""
    out: list[object] = [None]
    for flags in ("01", "00"):
        for trace_id in ("4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"):
            carrier = {
                "traceparent": f"00-{trace_id}-00f067aa0ba902b7-{flags}",
                "tracestate": "vendor=abc,other=1",
            }
            out.append(extract(carrier))
    return out


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_fast_path_matches_start_span(name: str) -> None:
    """Same trace ids in, same spans out: decision, ids, flags, trace state, parent."""
    rng = random.Random(name)
    for parent in parents():
        for _ in range(40):
            ids = [rng.getrandbits(128) or 1, rng.getrandbits(64) or 1]
            fast_provider, fast_exported = provider_for(SAMPLERS[name], ScriptedIds(ids))
            sdk_provider, sdk_exported = provider_for(SAMPLERS[name], ScriptedIds(ids))
            fast = ServerSpans(fast_provider.get_tracer("t")).start("GET", "/x", parent)
            sdk = sdk_provider.get_tracer("t").start_span(
                "GET /x", context=parent, kind=SpanKind.SERVER
            )
            assert fast.is_recording() == sdk.is_recording()
            assert fast.get_span_context() == sdk.get_span_context()
            if sdk.is_recording():
                assert isinstance(fast, ServerSpan)
            else:
                assert type(fast) is type(sdk)
            fast.end()
            sdk.end()
            assert len(fast_exported.get_finished_spans()) == len(sdk_exported.get_finished_spans())
            for a, b in zip(
                fast_exported.get_finished_spans(), sdk_exported.get_finished_spans(), strict=True
            ):
                assert (a.name, a.kind, a.parent) == (b.name, b.kind, b.parent)
                assert a.resource == b.resource
                assert a.instrumentation_scope == b.instrumentation_scope


def test_ratio_decisions_follow_the_trace_id() -> None:
    provider, exporter = provider_for(ParentBasedTraceIdRatio(0.25))
    spans = ServerSpans(provider.get_tracer("t"))
    started = [spans.start("GET", "/x", None) for _ in range(4000)]
    bound = TraceIdRatioBased.get_bound_for_rate(0.25)
    limit = TraceIdRatioBased.TRACE_ID_LIMIT
    recorded = [s for s in started if s.is_recording()]
    for span in started:
        sampled = span.get_span_context().trace_id & limit < bound
        assert span.is_recording() == sampled
        assert span.get_span_context().trace_flags.sampled == sampled
        span.end()
    assert 0.2 < len(recorded) / len(started) < 0.3
    exported = {s.context.trace_id for s in exporter.get_finished_spans()}
    assert exported == {s.get_span_context().trace_id for s in recorded}


def test_server_span_has_every_field_span_init_sets() -> None:
    provider, _ = provider_for(ALWAYS_ON)
    tracer = provider.get_tracer("t")
    sdk = tracer.start_span("GET /x", kind=SpanKind.SERVER)
    fast = ServerSpans(tracer).start("GET", "/x", None)
    assert isinstance(fast, SdkSpan)
    assert "_attributes" not in vars(fast)  # built only when used (here by hasattr below)
    for field in vars(sdk):  # an SDK upgrade adding a field fails here
        assert hasattr(fast, field), field
    for field in ("_kind", "_resource", "_instrumentation_scope", "_limits", "_sampler"):
        assert getattr(fast, field) == getattr(sdk, field), field
    assert fast._span_processor is sdk._span_processor
    assert fast.status.status_code == sdk.status.status_code


def test_server_span_is_a_full_sdk_span() -> None:
    provider, exporter = provider_for(ALWAYS_ON)
    span = ServerSpans(provider.get_tracer("t")).start("GET", "/x", None)
    with trace.use_span(span, end_on_exit=False):
        trace.get_current_span().set_attribute("user.id", "42")  # what route code does
        child = provider.get_tracer("t").start_span("db")
        child.end()
    span.add_event("cache miss", {"key": "k"})
    span.record_exception(ValueError("boom"))
    span.finish_server("GET /x", {"http.route": "/x", "http.response.status_code": 200})
    span.end()
    span.end()  # a second end is ignored
    span.set_attribute("late", 1)  # so is a late attribute
    db, server = exporter.get_finished_spans()
    assert db.parent == server.context
    assert dict(server.attributes) == {
        "user.id": "42",
        "http.route": "/x",
        "http.response.status_code": 200,
    }
    assert [e.name for e in server.events] == ["cache miss", "exception"]


def test_server_attributes_alone_are_stored_as_given() -> None:
    provider, exporter = provider_for(ALWAYS_ON)
    span = ServerSpans(provider.get_tracer("t")).start("GET", "/{id}", None)
    span.finish_server("GET /items/{id}", {"http.route": "/items/{id}", "server.port": 80})
    span.end()
    span.finish_server("GET /late", {"late": 1})  # after the end: ignored
    (finished,) = exporter.get_finished_spans()
    assert finished.name == "GET /items/{id}"
    assert dict(finished.attributes) == {"http.route": "/items/{id}", "server.port": 80}
    assert finished.dropped_attributes == 0 and finished.events == ()


@pytest.mark.parametrize("route_sets_one", [False, True])
def test_server_attributes_respect_the_span_limits(route_sets_one: bool) -> None:
    limits = SpanLimits(max_span_attributes=2, max_span_attribute_length=3)
    provider, exporter = provider_for(ALWAYS_ON, limits=limits)
    span = ServerSpans(provider.get_tracer("t")).start("GET", "/x", None)
    if route_sets_one:
        span.set_attribute("user", "someone")
    span.finish_server("GET /x", {"a": "long value", "b": 1, "c": 2})
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert dict(finished.attributes) == {"b": 1, "c": 2}  # the oldest dropped, as the SDK does
    assert finished.dropped_attributes == 2 if route_sets_one else 1


def test_truncation_limit_applies_to_server_attributes() -> None:
    limits = SpanLimits(max_span_attribute_length=4)
    provider, exporter = provider_for(ALWAYS_ON, limits=limits)
    span = ServerSpans(provider.get_tracer("t")).start("GET", "/x", None)
    span.finish_server("GET /x", {"user_agent.original": "Mozilla/5.0", "server.port": 80})
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert dict(finished.attributes) == {"user_agent.original": "Mozi", "server.port": 80}


class Custom(Sampler):
    def should_sample(self, *args: object, **kwargs: object) -> object:
        return ALWAYS_ON.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "custom"


@pytest.mark.parametrize(
    ("sampler", "plan"),
    [
        (ALWAYS_OFF, (0, False)),
        (DEFAULT_ON, (2**64, True)),
        (TraceIdRatioBased(0.5), (TraceIdRatioBased.get_bound_for_rate(0.5), False)),
        (Custom(), None),
        (ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON), None),
    ],
)
def test_sampling_plan(sampler: Sampler, plan: tuple[int, bool] | None) -> None:
    assert _sampling_plan(sampler) == plan


def test_other_samplers_go_through_start_span() -> None:
    provider, exporter = provider_for(Custom())
    span = ServerSpans(provider.get_tracer("t")).start("GET", "/x", None)
    assert type(span) is not ServerSpan and span.is_recording()
    span.end()
    assert [s.name for s in exporter.get_finished_spans()] == ["GET /x"]


@pytest.mark.parametrize(
    ("sampler", "arg", "expected"),
    [
        ("parentbased_traceidratio", "0.1", (TraceIdRatioBased.get_bound_for_rate(0.1), True)),
        ("traceidratio", "nonsense", (2**64, False)),  # the SDK's own fallback: rate 1.0
        ("", "", (2**64, True)),  # the SDK's default: parentbased_always_on
    ],
)
def test_plan_follows_the_sdk_reading_of_the_env(
    monkeypatch: pytest.MonkeyPatch, sampler: str, arg: str, expected: tuple[int, bool]
) -> None:
    if sampler:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    else:
        monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    assert _sampling_plan(TracerProvider().sampler) == expected


def test_global_provider_untouched() -> None:
    # provider_for builds private providers; the process-wide one stays the API default.
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_root_fast_path_draws_the_ids_the_sdk_would(name: str) -> None:
    """With the SDK's RandomIdGenerator and no parent, ids come from ``random`` directly:
    the same draws, in the same order, as ``start_span``."""
    fast_provider, _ = provider_for(SAMPLERS[name])
    sdk_provider, _ = provider_for(SAMPLERS[name])
    assert type(fast_provider.id_generator) is RandomIdGenerator
    spans = ServerSpans(fast_provider.get_tracer("t"))
    tracer = sdk_provider.get_tracer("t")
    for seed in range(300):
        random.seed(seed)
        fast = spans.start("GET", "/x", None)
        random.seed(seed)
        sdk = tracer.start_span("GET /x", kind=SpanKind.SERVER)
        assert fast.get_span_context() == sdk.get_span_context()
        assert fast.get_span_context().is_valid and not fast.get_span_context().is_remote
        assert fast.get_span_context().trace_state == sdk.get_span_context().trace_state
        assert fast.is_recording() == sdk.is_recording()
        fast.end()
        sdk.end()


def _activation_cases() -> list[tuple[str, Context | None]]:
    remote = extract({"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"})
    return [
        ("no parent", None),
        ("remote parent with baggage", baggage.set_baggage("tenant", "t1", remote)),
    ]


@pytest.mark.parametrize(("case", "parent"), _activation_cases())
def test_activate_makes_the_context_the_api_would(case: str, parent: Context | None) -> None:
    provider, _ = provider_for(ALWAYS_ON)
    spans = ServerSpans(provider.get_tracer("t"))
    span = spans.start("GET", "/x", parent)
    outer = otel_context.attach(otel_context.set_value("outer", "kept"))  # a caller's value
    try:
        expected = trace.set_span_in_context(span, parent)
        token = spans.activate(span, parent)
        assert otel_context.get_current() == expected, case
        assert trace.get_current_span() is span
        spans.deactivate(token)
        assert otel_context.get_value("outer") == "kept"
        assert trace.get_current_span() is trace.INVALID_SPAN
    finally:
        otel_context.detach(outer)
