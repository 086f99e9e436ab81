"""The OTLP/HTTP span exporter with the hand-written encoder of ``otlp_encoding``.

Everything but the encoding is the SDK's ``OTLPSpanExporter``: its configuration by the
``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers, timeout, compression, TLS), its
transport and retries, its size limit and its own metrics. ``tracing.py`` imports this
module only when tracing is on: with it off, the exporter (and ``requests``) never load.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from app.platform.otlp_encoding import encode_export_request

_logger = logging.getLogger(__name__)


class LeanOTLPSpanExporter(OTLPSpanExporter):
    """``OTLPSpanExporter`` whose ``export`` encodes with ``encode_export_request``."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return super().export(spans)  # logs and fails as the SDK does
        with self._metrics.export_operation(len(spans)) as result:
            try:
                data = encode_export_request(spans)
            except Exception as error:
                _logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            if 0 < self._max_request_size < len(data):
                _logger.warning("Dropping span batch: %d bytes exceed max_request_size", len(data))
                result.error = ValueError("span batch exceeds max_request_size")
                return SpanExportResult.FAILURE
            sent = self._client.export(data)
            if not sent.success:
                result.error = sent.error
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
