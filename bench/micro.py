"""Micro-benchmarks behind the hand-written hot paths (``timeit``, best of 5, µs per item).

    .venv/bin/python bench/micro.py

Each pair puts the library's way next to the kit's, in one process:
- OTLP encoding of a server span: ``encode_spans(...).SerializePartialToString()``
  (opentelemetry-exporter-otlp-proto-common) vs ``app.platform.otlp_encoding``;
- a sampled server span's life (start, name and HTTP attributes, end into a batch
  processor): ``Tracer.start_span`` vs ``ServerSpans``/``ServerSpan``;
- an unsampled root span: ``Tracer.start_span`` vs ``ServerSpans``;
- one request's metrics (in-progress gauge up and down, counter, histogram) in
  multiprocess mode: prometheus-client's ``labels(...).inc()``/``observe()`` vs
  ``HttpMetrics.start``/``finish``;
- one access line: structlog's JSON pipeline vs ``AccessLog`` (rendered in a batch);
- one request to a route three routers deep, through the FastAPI app (a minimal handler):
  FastAPI 0.165's own routing of lazily included routers vs ``dispatch.RouteIndex``.

These run hot in a tight loop; inside a request the same code runs cold and costs several
times as much (``bench/inprocess.py`` and ``make bench`` measure that).
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from opentelemetry.trace import SpanKind

from app.platform.logging import AccessLog, configure_logging, get_logger
from app.platform.metrics import (
    DURATION_HELP,
    IN_PROGRESS_HELP,
    LATENCY_BUCKETS,
    REQUESTS_HELP,
    HttpMetrics,
)
from app.platform.otlp_encoding import encode_export_request
from app.platform.tracing import ServerSpan, ServerSpans

ROUTE = "/api/v1/hello"
ATTRIBUTES: dict[str, Any] = {
    "http.request.method": "GET",
    "http.route": ROUTE,
    "url.path": ROUTE,
    "url.scheme": "http",
    "network.protocol.version": "1.1",
    "http.response.status_code": 200,
    "client.address": "127.0.0.1",
    "server.address": "127.0.0.1",
    "server.port": 8000,
    "user_agent.original": "wrk",
}


SCALE = 1.0  # --quick: a hundredth of the iterations (the tests' smoke run)


def best(func: Any, number: int, per: int = 1) -> float:
    """Best of 5 runs, in µs per item."""
    number = max(1, int(number * SCALE))
    return min(timeit.repeat(func, number=number, repeat=5)) / number / per * 1e6


class _Discard(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def encoding() -> tuple[float, float]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"process.pid": 1}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for _ in range(256):
        tracer.start_span(f"GET {ROUTE}", kind=SpanKind.SERVER, attributes=ATTRIBUTES).end()
    spans = memory.get_finished_spans()
    official = best(lambda: encode_spans(spans).SerializePartialToString(), 20, len(spans))
    ours = best(lambda: encode_export_request(spans), 20, len(spans))
    return official, ours


def span_life(sampler: Any) -> tuple[float, float]:
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(
        BatchSpanProcessor(_Discard(), max_queue_size=1 << 20, schedule_delay_millis=60_000)
    )
    tracer = provider.get_tracer("bench")
    spans = ServerSpans(tracer)

    def sdk() -> None:
        span = tracer.start_span(f"GET {ROUTE}", kind=SpanKind.SERVER)
        if span.is_recording():
            span.update_name(f"GET {ROUTE}")
            span.set_attributes(ATTRIBUTES)
        span.end()

    def kit() -> None:
        span = spans.start("GET", ROUTE, None)
        if isinstance(span, ServerSpan):
            span.finish_server(f"GET {ROUTE}", dict(ATTRIBUTES))
            span.end()

    result = best(sdk, 20_000), best(kit, 20_000)
    provider.shutdown()
    return result


def request_metrics() -> tuple[float, float]:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

    directory = tempfile.mkdtemp(prefix="bench-micro-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue()
    registry = CollectorRegistry()
    labels = ("method", "route")
    requests = Counter("http_requests", REQUESTS_HELP, [*labels, "status"], registry=registry)
    duration = Histogram(
        "http_request_duration_seconds",
        DURATION_HELP,
        labels,
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    in_progress = Gauge(
        "http_requests_in_progress",
        IN_PROGRESS_HELP,
        labels,
        multiprocess_mode="livesum",
        registry=registry,
    )

    def library() -> None:
        gauge = in_progress.labels("GET", ROUTE)
        gauge.inc()
        gauge.dec()
        requests.labels("GET", ROUTE, "200").inc()
        duration.labels("GET", ROUTE).observe(0.0012)

    metrics = HttpMetrics(tempfile.mkdtemp(prefix="bench-micro-metrics-"))  # its own files

    def kit() -> None:
        metrics.finish(metrics.start("GET", ROUTE), "GET", ROUTE, 200, 0.0012)

    return best(library, 20_000), best(kit, 20_000)


class _Sink:
    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def write(self, text: str) -> int:
        self.buffer.seek(0)
        return len(text)

    def flush(self) -> None:
        self.buffer.seek(0)
        self.buffer.truncate()


def access_line() -> tuple[float, float]:
    sink = _Sink()
    configure_logging("info", "json", sink)
    structlog_logger = get_logger("app.access")
    fields = {"method": "GET", "path": ROUTE, "route": ROUTE, "status": 200}
    fields |= {"duration_ms": 1.234, "client_ip": "127.0.0.1", "request_id": "f" * 32}
    via_structlog = best(lambda: structlog_logger.info("request", **fields), 20_000)
    log = AccessLog("json", "info", sink)
    row = ("GET", ROUTE, ROUTE, 200, 0.001234, ("127.0.0.1", 5555), "f" * 32, None, None)
    rows = [(time.time(), row)] * 64

    def batch() -> None:
        log._rows = list(rows)
        log.flush()

    return via_structlog, best(batch, 2_000, len(rows))


def nested_dispatch() -> tuple[float, float]:
    import asyncio

    from fastapi import APIRouter, FastAPI

    from app.platform.dispatch import install_route_index

    async def place_order(uid: int) -> dict[str, int]:
        return {"uid": uid}

    def build(index: bool) -> FastAPI:
        orders = APIRouter(prefix="/{uid}/orders")
        orders.add_api_route("", place_order, methods=["POST"])
        users = APIRouter(prefix="/users")
        users.include_router(orders)
        shop = APIRouter(prefix="/shop/v1")
        shop.include_router(users)
        api = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})
        api.include_router(shop)
        if index:
            install_route_index(api)
        return api

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    async def requests(api: FastAPI, count: int) -> None:
        for n in range(count):
            path = f"/shop/v1/users/{n}/orders"
            scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode()}
            scope |= {"root_path": "", "query_string": b"", "headers": [], "app": api}
            await api(scope, receive, send)

    loop = asyncio.new_event_loop()
    count = max(1, int(2_000 * SCALE))

    def per_request(api: FastAPI) -> float:
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            loop.run_until_complete(requests(api, count))
            runs.append((time.perf_counter() - start) / count * 1e6)
        return min(runs)

    try:
        return per_request(build(False)), per_request(build(True))
    finally:
        loop.close()


def main() -> None:
    global SCALE
    if "--quick" in sys.argv[1:]:
        SCALE = 0.01
    print(f"{'what':44} {'library':>9} {'kit':>9}   (µs per item, best of 5)")
    for label, (theirs, ours) in (
        ("OTLP protobuf encoding, per span", encoding()),
        ("sampled server span: start, attributes, end", span_life(ALWAYS_ON)),
        ("unsampled root span", span_life(ALWAYS_OFF)),
        ("metrics of one request (multiprocess files)", request_metrics()),
        ("access line (kit: rendered in a batch of 64)", access_line()),
        ("request to a route three routers deep", nested_dispatch()),
    ):
        print(f"{label:44} {theirs:9.2f} {ours:9.2f}   x{theirs / ours:.1f}")


if __name__ == "__main__":
    main()
