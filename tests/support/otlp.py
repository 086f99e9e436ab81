"""A test OTLP/HTTP receiver: decodes real ``ExportTraceServiceRequest`` protobuf bodies.

No collector can be installed here, so this is the peer for tracing tests: the service's
real exporter posts protobuf to ``/v1/traces`` and the spans are decoded with the
official ``opentelemetry-proto`` classes.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support.loopback import QuietHandler, serve_in_thread


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def _attrs(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


@dataclass
class OtlpReceiver:
    """``defer_decode=True`` stores the bodies and decodes them on :meth:`snapshot`: the
    benchmark's sink then costs the machine almost nothing while it measures (decoding is
    a collector's work, on another machine in production)."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    defer_decode: bool = False
    _raw: list[bytes] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> OtlpReceiver:
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver._receive(body)
                payload = ExportTraceServiceResponse().SerializeToString()
                self.reply("application/x-protobuf", payload)

        self._server = serve_in_thread(Handler)
        self.port = self._server.server_address[1]
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _receive(self, body: bytes) -> None:
        with self._lock:
            self.requests += 1
            if self.defer_decode:
                self._raw.append(body)
            else:
                self._decode(body)

    def _decode(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    self.spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes=_attrs(span.attributes),
                            resource=resource,
                        )
                    )

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            for body in self._raw:
                self._decode(body)
            self._raw.clear()
            return list(self.spans)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
