"""Spans from every worker, decoded from real OTLP protobuf by a test receiver."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.otlp import OtlpReceiver
from tests.support.server import GunicornServer, running_server, wait_for

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver().start()
    yield r
    r.stop()


def traced_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "kit-under-test",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }


def test_spans_from_every_worker_with_semantic_attributes(receiver: OtlpReceiver) -> None:
    with running_server(traced_env(receiver), workers=2) as srv:
        n = 40
        for i in range(n):
            with httpx.Client(headers={"Connection": "close"}) as c:
                c.get(f"{srv.base_url}/team/v1/hello", params={"name": f"w{i}"})
                c.get(f"{srv.base_url}/livez")
                c.get(f"{srv.base_url}/readyz")
        traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
        continued = httpx.get(
            f"{srv.base_url}/team/v1/echo-nope", headers={"traceparent": traceparent}
        )
        assert continued.status_code == 404
        httpx.post(
            f"{srv.base_url}/team/v1/echo",
            json={"message": "hi"},
            headers={"traceparent": traceparent, "X-Request-ID": "traced-1"},
        )
        code = srv.stop()  # flushes the batch processors at shutdown
        access = [e for e in srv.access_logs() if e.get("request_id") == "traced-1"]
    assert code == 0
    spans = [s for s in receiver.snapshot() if s.resource.get("service.name") == "kit-under-test"]
    hello = [s for s in spans if s.name == "GET /team/v1/hello"]
    assert len(hello) == n
    assert len({s.resource["process.pid"] for s in hello}) == 2  # both workers export
    assert not [s for s in spans if "livez" in s.name or "readyz" in s.name]
    span = hello[0]
    assert span.kind == 2  # SPAN_KIND_SERVER
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["http.route"] == "/team/v1/hello"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["url.path"] == "/team/v1/hello"
    assert span.resource["deployment.environment"] == "test"

    (echo,) = [s for s in spans if s.name == "POST /team/v1/echo"]
    assert (echo.trace_id, echo.parent_span_id) == (CALLER_TRACE, CALLER_SPAN)
    (unmatched,) = [s for s in spans if s.name == "GET unmatched"]
    assert unmatched.trace_id == CALLER_TRACE
    # The access line of a sampled request carries the ids of its span.
    (line,) = access
    assert (line["trace_id"], line["span_id"]) == (CALLER_TRACE, echo.span_id)


def test_no_endpoint_means_no_tracing(receiver: OtlpReceiver) -> None:
    before = receiver.requests
    with running_server({"OTEL_SERVICE_NAME": "kit-untraced"}, workers=1) as srv:
        httpx.get(f"{srv.base_url}/team/v1/hello")
        wait_for(lambda: srv.access_logs(), timeout=5)
        line = srv.access_logs()[-1]
    assert "trace_id" not in line
    assert receiver.requests == before


def test_unsupported_protocol_is_a_config_error(receiver: OtlpReceiver) -> None:
    srv = GunicornServer(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    )
    try:
        srv.start(wait_ready=False)
        assert srv.proc is not None and srv.proc.wait(30) != 0
        (line,) = srv.lines()
        assert "OTEL_EXPORTER_OTLP_PROTOCOL" in line and "grpc" in line
    finally:
        srv.close()
