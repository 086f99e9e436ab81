"""The hand-written OTLP encoder against the official one, and its exporter on the wire."""

from __future__ import annotations

import logging
import math

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace.span import TraceState

from app.platform.otlp_encoding import encode_export_request
from app.platform.otlp_exporter import LeanOTLPSpanExporter
from tests.support.otlp import OtlpReceiver

ODD_VALUES = {
    "str": "héllo \x00 wörld",
    "empty": "",
    "true": True,
    "false": False,
    "zero": 0,
    "one": 1,  # 1 == True: the cache must not confuse them
    "negative": -5,
    "max": 2**63 - 1,
    "min": -(2**63),
    "float": 1.5,
    "float_one": 1.0,
    "nan": math.nan,
    "strings": ("a", "b"),
    "ints": [1, -2],
    "bools": (True, False),
    "floats": (0.5,),
    "empty_seq": (),
}


def finished_spans() -> list[ReadableSpan]:
    """Spans covering every field the encoder writes, from two providers and three scopes."""
    spans: list[ReadableSpan] = []
    for resource in (Resource.create({"process.pid": 1, **ODD_VALUES}), Resource({}, "http://s")):
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(memory))
        scoped = provider.get_tracer("a", "1.0", "http://schema", {"scope.attr": "x"})
        plain = provider.get_tracer("b")
        with scoped.start_as_current_span("root", kind=SpanKind.SERVER, attributes=ODD_VALUES) as s:
            s.add_event("event", {"b": True, "neg": -5, "seq": ("a", "b"), "d": 0.0})
            s.record_exception(ValueError("boom"))
            s.set_status(Status(StatusCode.ERROR, "it broke"))
            link = Link(SpanContext(5, 6, True, TraceFlags(1)), {"k": "v"})
            with plain.start_as_current_span("child", links=[link]) as child:
                child.set_attribute("n", 0)
            for kind in SpanKind:
                plain.start_span(f"kind {kind.name}", kind=kind).end()
        state = TraceState([("k", "v"), ("a", "b")])
        remote = SpanContext(0xABC, 0xDEF, True, TraceFlags(1), state)
        parent = set_span_in_context(NonRecordingSpan(remote))
        with scoped.start_as_current_span("remote child", context=parent) as r:
            r.set_status(StatusCode.OK)
        spans.extend(memory.get_finished_spans())
    return spans


def official(spans: list[ReadableSpan]) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(encode_spans(spans).SerializeToString())


def ours(spans: list[ReadableSpan]) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(encode_export_request(spans))


def test_same_message_as_the_official_encoder() -> None:
    spans = finished_spans()
    expected, got = official(spans), ours(spans)
    # NaN != NaN would make the messages unequal; compare it apart.
    for request in (expected, got):
        for kv in request.resource_spans[0].resource.attributes:
            if kv.key == "nan":
                assert math.isnan(kv.value.double_value)
                kv.value.double_value = 0.0
        for scope in request.resource_spans[0].scope_spans:
            for span in scope.spans:
                for kv in span.attributes:
                    if kv.key == "nan":
                        kv.value.double_value = 0.0
    assert len(got.resource_spans) == 2
    assert got == expected


def test_twice_in_a_row_gives_the_same_bytes() -> None:
    spans = finished_spans()
    assert encode_export_request(spans) == encode_export_request(spans)  # the caches hold


def test_unencodable_attribute_is_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    span = finished_spans()[0]
    span._attributes = {"ok": "yes", "bad": object(), "surrogate": "\udc80"}  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR):
        request = ours([span])
    keys = [kv.key for kv in request.resource_spans[0].scope_spans[0].spans[0].attributes]
    assert keys == ["ok"]
    assert "Failed to encode key bad" in caplog.text


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_exporter_posts_decodable_protobuf(
    monkeypatch: pytest.MonkeyPatch, compression: str
) -> None:
    receiver = OtlpReceiver().start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
        exporter = LeanOTLPSpanExporter()
        spans = finished_spans()
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        received = receiver.snapshot()
        assert sorted(s.name for s in received) == sorted(s.name for s in spans)
        root = next(s for s in received if s.name == "root")
        assert root.attributes["max"] == 2**63 - 1 and root.attributes["one"] == 1
        exporter.shutdown()
        assert exporter.export(spans) is SpanExportResult.FAILURE  # after shutdown
    finally:
        receiver.stop()


def test_exporter_drops_a_batch_over_the_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = OtlpReceiver().start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        exporter = LeanOTLPSpanExporter(max_request_size=100)
        assert exporter.export(finished_spans()) is SpanExportResult.FAILURE
        assert receiver.requests == 0
    finally:
        receiver.stop()
