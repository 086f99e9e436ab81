"""OpenTelemetry tracing, configured only by the standard ``OTEL_*`` variables.

Started in each worker after the fork (``post_fork`` hook, or the app's lifespan when the
app runs outside gunicorn): a ``BatchSpanProcessor`` owns a background thread, and threads
do not survive ``fork()``. With no OTLP endpoint, or ``OTEL_SDK_DISABLED=true``, no provider
is installed and the middleware skips tracing entirely: zero per-request cost.

The server span itself is created by ``middleware.py`` through the OpenTelemetry API, not by
``opentelemetry-instrumentation-fastapi``: the instrumentation wraps the app in two more ASGI
layers and builds its attributes on every request, sampled or not, which cost about 40% of
throughput here (see the README's performance section); the lean span costs a few percent.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace

_SUPPORTED_PROTOCOLS = ("http/protobuf",)
_provider: Any = None


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


def configure_tracing() -> trace.Tracer | None:
    """Install a tracer provider in this process (idempotent); None when tracing is off."""
    global _provider
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
        provider = TracerProvider(resource=Resource.create({"process.pid": os.getpid()}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _provider = provider
    return trace.get_tracer("app.platform.middleware")


def shutdown_tracing() -> None:
    """Flush pending spans and stop the exporter thread (called at worker shutdown)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None
