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
import threading
from random import getrandbits
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import DEFAULT_TRACE_STATE
from opentelemetry.trace.status import Status, StatusCode

_SUPPORTED_PROTOCOLS = ("http/protobuf",)
_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT
_ALL = _TRACE_ID_LIMIT + 1  # a root bound every trace id is under
_UNSET = Status(StatusCode.UNSET)
_provider: Any = None
_spans: ServerSpans | None = None


class ServerSpan(sdk_trace.Span):
    """A sampled server span: the SDK's ``Span``, built without ``Tracer.start_span``.

    It is the SDK class, so what a route does with it is the SDK's own code: attributes and
    their limits, events, ``record_exception``, status, child spans, the span processors and
    the exporter. Only what the request path itself pays is shortened, because a sampled
    request (one in ten at ratio 0.1) runs this code cold and pays several times its
    micro-benchmark (README, "Performance"):

    - ``ServerSpans`` makes one subclass per tracer holding the tracer's constants
      (resource, scope, limits, processors) as class attributes; a span sets five fields;
    - the attribute, event and link containers are built on first use (``__getattr__``):
      a span that no route touches never builds them;
    - the middleware hands its name and HTTP attributes over in one call
      (:meth:`finish_server`); they are stored as given (known-valid ``str``/``int``
      values) unless a route added attributes or a length limit is set, in which case
      they go through ``BoundedAttributes`` like any other;
    - ``end`` hands the span itself to the processors, without ``Span.end``'s
      ``ReadableSpan`` copy: nothing can change it once ended.

    ``tests/unit/test_tracing.py`` checks that every field ``Span.__init__`` sets is there,
    so an SDK upgrade cannot slip past.
    """

    _kind = SpanKind.SERVER
    _status = _UNSET
    _end_time: int | None = None
    _trace_config = None
    _record_exception = True
    _set_status_on_exception = True
    _record_end_metrics = None
    # Set on the per-tracer subclass (ServerSpans.__init__).
    _limits: Any
    _plain_attributes_ok = False

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        parent_context: Context | None,
    ) -> None:
        self._name = name
        self._context = context
        self._parent = parent
        self._lock = threading.Lock()
        self._server_attributes: dict[str, Any] | None = None
        self._start_time = time_ns()
        self._span_processor.on_start(self, parent_context=parent_context)

    def __getattr__(self, name: str) -> Any:
        """Builds ``_attributes``, ``_events`` or ``_links`` on first use. (Not under
        ``_lock``: the SDK reads them while holding it. Two threads touching a fresh span
        at the same instant could each build one; spans are used from one task.)"""
        limits = self._limits
        if name == "_attributes":
            value: Any = BoundedAttributes(
                limits.max_span_attributes,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )
        elif name == "_events":
            value = BoundedList(limits.max_events)
        elif name == "_links":
            value = BoundedList(limits.max_links)
        else:
            raise AttributeError(name)
        setattr(self, name, value)
        return value

    def finish_server(self, name: str, attributes: dict[str, Any]) -> None:
        """The final name (with the matched route) and the HTTP attributes, set at once."""
        if self._end_time is None:
            self._name = name
            self._server_attributes = attributes

    def end(self, end_time: int | None = None) -> None:
        with self._lock:
            if self._end_time is not None:
                return
            self._end_time = end_time if end_time is not None else time_ns()
            server = self._server_attributes
            added = self.__dict__.get("_attributes")
            if added is None and server is not None and self._plain_attributes_ok:
                self._attributes = server  # read as a plain mapping, as ReadableSpan allows
            else:
                if server:
                    self._attributes._set_items(server)  # cleaned and bounded
                self._attributes._immutable = True
        self._span_processor._on_ending(self)
        self._span_processor.on_end(self)


def _valid_local_context(trace_id: int, span_id: int, flags: TraceFlags) -> SpanContext:
    """``SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags)`` for ids known
    to be valid (non-zero, in range), without the constructor's checks: the same tuple
    (``tests/unit/test_tracing.py`` compares them) for a third of the cost."""
    return tuple.__new__(SpanContext, (trace_id, span_id, False, flags, DEFAULT_TRACE_STATE, True))


def _nonzero_bits(bits: int) -> int:
    """Random bits redrawn while 0, as the SDK's ``RandomIdGenerator`` draws ids."""
    value = 0
    while not value:
        value = getrandbits(bits)
    return value


def _sampling_plan(sampler: Sampler) -> tuple[int, bool] | None:
    """(root bound, parent-based) when ``ServerSpans`` can take the sampler's decisions.

    Those are the samplers ``OTEL_TRACES_SAMPLER`` names — ``always_on``, ``always_off``,
    ``traceidratio`` and their ``parentbased_`` forms (the SDK's default is
    ``parentbased_always_on``) — read off the sampler object the provider built, so the
    SDK's own parsing of ``OTEL_TRACES_SAMPLER_ARG`` stays the only one. None for anything
    else: every span then goes through ``Tracer.start_span``.
    """
    parent_based = isinstance(sampler, ParentBased)
    if parent_based:
        if (
            sampler._remote_parent_sampled is not ALWAYS_ON
            or sampler._remote_parent_not_sampled is not ALWAYS_OFF
        ):
            return None
        sampler = sampler._root
    if isinstance(sampler, TraceIdRatioBased):
        return sampler.bound, parent_based
    if sampler is ALWAYS_ON:
        return _ALL, parent_based
    if sampler is ALWAYS_OFF:
        return 0, parent_based
    return None


class ServerSpans:
    """Starts the one server span per request, taking the sampler's decision itself.

    With the samplers of ``_sampling_plan`` the decision is a pure function: for a root,
    ``trace_id & (2**64 - 1) < bound`` (a fixed ``bound`` for ``always_on``/``always_off``);
    for a remote parent under a ``parentbased_`` sampler, the parent's sampled flag. An
    unsampled span (90% at ratio 0.1) is then a ``NonRecordingSpan`` and a sampled one a
    ``ServerSpan``, both without ``Tracer.start_span`` (``bench/micro.py``: 7.3 against
    1.8 us unsampled, 24.5 against 5.9 us sampled, hot). Ids, trace flags and trace state
    are the ones ``start_span`` would give; ``tests/unit/test_tracing.py`` compares the two
    on the same trace ids. Any other sampler goes through ``start_span``.

    :meth:`activate` makes the span current for the route's code (through the API), and
    ``deactivate`` undoes it.
    """

    def __init__(self, tracer: sdk_trace.Tracer) -> None:
        self._tracer = tracer
        self._ids = tracer.id_generator
        self._plan = _sampling_plan(tracer.sampler)
        random_flag = TraceFlags.RANDOM_TRACE_ID if self._ids.is_trace_id_random() else 0
        # (unsampled, sampled) flags of a root span, built once.
        self._root_flags = (TraceFlags(random_flag), TraceFlags(random_flag | TraceFlags.SAMPLED))
        # The SDK's own generator is getrandbits() redrawn while 0: inlined below.
        self._random_ids = type(self._ids) is RandomIdGenerator
        limits = tracer._span_limits
        self._span_class = type(
            "ServerSpan",
            (ServerSpan,),
            {
                "__module__": __name__,
                "_instrumentation_info": tracer.instrumentation_info,
                "_instrumentation_scope": tracer._instrumentation_scope,
                "_resource": tracer.resource,
                "_sampler": tracer.sampler,
                "_span_processor": tracer.span_processor,
                "_limits": limits,
                "_plain_attributes_ok": limits.max_span_attribute_length is None
                and (limits.max_span_attributes is None or limits.max_span_attributes >= 16),
            },
        )

    def start(self, method: str, route: str, parent: Context | None) -> Span:
        """The server span of one request; its name, ``"{method} {route}"``, is only built
        for a span that records."""
        plan = self._plan
        if plan is None:
            return self._tracer.start_span(
                f"{method} {route}", context=parent, kind=SpanKind.SERVER
            )
        bound, parent_based = plan
        if parent is None and self._random_ids:
            # The common case (no traceparent), kept to a minimum: it runs on every
            # request, and 90% of them at ratio 0.1 end here with an unsampled span.
            trace_id = getrandbits(128) or _nonzero_bits(128)
            span_id = getrandbits(64) or _nonzero_bits(64)
            sampled = trace_id & _TRACE_ID_LIMIT < bound
            context = _valid_local_context(trace_id, span_id, self._root_flags[sampled])
            if not sampled:
                return NonRecordingSpan(context)
            return self._span_class(f"{method} {route}", context, None, None)
        ids = self._ids
        remote = trace.get_current_span(parent).get_span_context() if parent else None
        if remote is None or not remote.is_valid:
            remote = None
            trace_id = ids.generate_trace_id()
            sampled = trace_id & _TRACE_ID_LIMIT < bound
            flags = self._root_flags[sampled]
            state = None
        else:
            trace_id = remote.trace_id
            if parent_based:
                sampled = remote.trace_flags.sampled
            else:
                sampled = trace_id & _TRACE_ID_LIMIT < bound
            random_flag = remote.trace_flags & TraceFlags.RANDOM_TRACE_ID
            flags = TraceFlags(random_flag | TraceFlags.SAMPLED if sampled else random_flag)
            state = remote.trace_state
        context = SpanContext(
            trace_id, ids.generate_span_id(), is_remote=False, trace_flags=flags, trace_state=state
        )
        if not sampled:
            return NonRecordingSpan(context)
        return self._span_class(f"{method} {route}", context, remote, parent)

    def activate(self, span: Span, parent: Context | None) -> Any:
        """Make ``span`` current (in ``parent``, else in the current context); returns the
        token to hand to :meth:`deactivate`. Through the API: setting the runtime's
        ``ContextVar`` directly saved 0.14 us (``bench/micro.py``), under the 3 us a
        hand-written path must save to stay."""
        return otel_context.attach(trace.set_span_in_context(span, parent))

    @staticmethod
    def deactivate(token: Any) -> None:
        otel_context.detach(token)


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
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from app.platform.otlp_exporter import LeanOTLPSpanExporter

        # Resource.create() reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the sampler
        # comes from OTEL_TRACES_SAMPLER(_ARG), the exporter from OTEL_EXPORTER_OTLP_*.
        # process.pid tells the workers of one pod apart.
        provider = TracerProvider(resource=Resource.create({"process.pid": os.getpid()}))
        provider.add_span_processor(BatchSpanProcessor(LeanOTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _provider = provider
        _spans = ServerSpans(provider.get_tracer("app.platform.middleware"))
    return _spans


def shutdown_tracing() -> None:
    """Flush pending spans and stop the exporter thread (called at worker shutdown)."""
    global _provider, _spans
    if _provider is not None:
        _provider.shutdown()
        _provider = _spans = None
