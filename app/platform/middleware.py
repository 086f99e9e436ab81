"""The one observability and protection layer, written as pure ASGI.

Everything cross-cutting happens here, in a single wrapper around the FastAPI app, because
each extra middleware layer (and ``BaseHTTPMiddleware`` above all) costs throughput:

- request id: the caller's ``X-Request-ID`` when it matches ``^[A-Za-z0-9._-]{1,128}$``,
  else a fresh one; echoed on every response and bound for every log line;
- security headers on every response (uvicorn's ``Server`` header is off in ``worker.py``);
- load shedding: past ``APP_MAX_CONCURRENT_REQUESTS`` in flight in this worker, a fast 503
  with ``Retry-After`` instead of an unbounded queue (probes are never shed); a request with
  a body is admitted only once its body has arrived (at once when the server has it all,
  else by ``_BodyReceiver``);
- body limit: 413 when ``Content-Length`` exceeds ``APP_MAX_BODY_BYTES``, or as soon as a
  chunked body streams past it;
- metrics (route template labels: the route ``dispatch.RouteIndex`` will serve, else
  ``routes.RouteResolver``'s), the server span, and one
  access line per request; a client that left before the response was complete is
  recorded as 499 (nginx's code);
- unhandled exceptions, also after the response started (a failing stream or background
  task): one error log line with the traceback, counted as a 500; a problem+json 500 out
  when nothing was sent yet.

WebSocket sessions are handed to ``websockets.WebSocketSessions`` (request id, metrics, a
log line per connection, idle limit, close on drain).

Probes (``/livez``, ``/readyz``) are served here by ``health.Probes``, not by the app's
routing; they produce no span and no access line, and are counted in the metrics.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from random import getrandbits
from time import perf_counter
from typing import Any

from opentelemetry import propagate
from opentelemetry.trace import NonRecordingSpan, Status, StatusCode
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.platform.context import request_id_var
from app.platform.dispatch import FOUND_KEY, RouteIndex
from app.platform.errors import PROBLEM_JSON, UNEXPECTED_ERROR, problem_body
from app.platform.health import PROBE_PATHS
from app.platform.metrics import KNOWN_METHODS, OTHER_METHOD, HttpMetrics
from app.platform.routes import RouteResolver
from app.platform.tracing import ServerSpan, ServerSpans

# nginx's code for "the client closed the connection before the response was complete".
CLIENT_CLOSED_REQUEST = 499
# Where ``app_factory.OuterStack`` leaves the server's own ``send`` when middleware runs
# outside the platform layer, so a client that left can still be told apart (499).
SERVER_SEND_KEY = "app.platform.server_send"
_valid_request_id = re.compile(rb"[A-Za-z0-9._-]{1,128}").fullmatch
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
# Swagger UI and ReDoc load scripts and styles, so their pages (only served when
# APP_DOCS_ENABLED=true) get every header but the CSP.
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
_DOCS_HEADERS = tuple(h for h in SECURITY_HEADERS if h[0] != b"content-security-policy")
_NO_STORE = (b"cache-control", b"no-store")
_RID = b"x-request-id"
_RETRY_AFTER = ((b"retry-after", b"1"),)


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a streamed body passes the limit; rendered as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


class ServerBusy(StarletteHTTPException):
    """Raised from ``receive`` when a request's body has arrived but the worker is at its
    concurrency limit; rendered as a 503 with ``Retry-After``."""

    def __init__(self) -> None:
        super().__init__(
            503, "server busy: concurrency limit reached, retry later", {"Retry-After": "1"}
        )


class _BodyReceiver:
    """``receive`` for a request with a body: admission once the body is in, and the limit
    of a chunked body.

    A request is admitted against ``APP_MAX_CONCURRENT_REQUESTS`` only once its whole body
    has arrived, so clients that trickle bodies (slowhttptest ``-B``) hold a connection and
    a buffer, bounded by ``APP_BODY_TIMEOUT_SECONDS``, but never a slot that a request ready
    to run needs. A body with no ``Content-Length`` is counted as it streams (413 past the
    limit).
    """

    __slots__ = ("admitted", "chunked", "limit", "platform", "receive", "received")

    def __init__(
        self, receive: Receive, platform: PlatformMiddleware, chunked: bool, limit: int
    ) -> None:
        self.receive = receive
        self.platform = platform
        self.chunked = chunked
        self.limit = limit
        self.received = 0
        self.admitted = False

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            if self.chunked:
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    raise BodyTooLarge(self.limit)
            if not message.get("more_body", False) and not self.admitted:
                platform = self.platform
                if platform.in_flight >= platform.limit:
                    raise ServerBusy
                platform.in_flight += 1
                self.admitted = True
        return message


class PlatformMiddleware:
    """See the module docstring; constructed once per worker by ``app.main``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: RouteResolver,
        index: RouteIndex | None = None,
        probes: ASGIApp,
        websockets: ASGIApp,
        metrics: HttpMetrics,
        max_body_bytes: int,
        max_concurrent_requests: int,
        access_log: bool,
        logger: Any,
    ) -> None:
        self.app = app
        self._probes = probes  # /livez and /readyz, served here rather than by the app
        self._websockets = websockets  # WebSocket sessions (``websockets.WebSocketSessions``)
        self._routes = routes
        self._index = index  # the app's RouteIndex (dispatch.py), when it has one
        self._metrics = metrics
        self._max_body = max_body_bytes
        self.limit = max_concurrent_requests
        self._access_log = access_log
        self._log = logger
        # Set by the lifespan when tracing is configured (an OTLP endpoint is set).
        self.spans: ServerSpans | None = None
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Every line here runs once per request, between the server's and the app's own
        # work, where each Python operation costs several times its micro-benchmark:
        # docs/performance.md has the figures behind the shape of this method.
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self._websockets(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        start = perf_counter()
        method = scope["method"]
        path = scope["path"]
        tracer = self.spans

        request_id = content_length = carrier = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value
            elif name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                chunked = True
            elif tracer is not None and name in _TRACE_HEADERS:
                if carrier is None:
                    carrier = {}
                carrier[name.decode("latin-1")] = value.decode("latin-1")
        if request_id is not None and _valid_request_id(request_id):
            rid_bytes = request_id
            rid = request_id.decode("ascii")
        else:
            rid = f"{getrandbits(128):032x}"
            rid_bytes = rid.encode("ascii")
        rid_token = request_id_var.set(rid)

        probe = path in PROBE_PATHS
        index = self._index
        found = None
        if index is not None and not probe:
            # The route FastAPI will serve, found once: its template is the label, and
            # the index dispatches to it without matching again.
            found = index.find(scope)
            scope[FOUND_KEY] = (path, method, found)
        route = found[0].template if found is not None else self._routes.resolve(method, path)
        label_method = method if method in KNOWN_METHODS else OTHER_METHOD
        metrics = self._metrics
        started_slot = metrics.start(label_method, route)
        server_send = scope.get(SERVER_SEND_KEY, send)
        cycle = getattr(server_send, "__self__", None)  # uvicorn's RequestResponseCycle
        extra_headers = (
            *(_DOCS_HEADERS if path in DOCS_PATHS else SECURITY_HEADERS),
            (_RID, rid_bytes),
        )
        status = 0  # the response's status once it has started

        def send_with_headers(message: Message) -> Awaitable[None]:
            # A plain function handing back the server's awaitable: no coroutine of its
            # own for each of the two messages of a response.
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", ())
                # Header names are lower-case in ASGI messages (the spec requires it).
                for key, _ in headers:
                    if key == b"cache-control":
                        message["headers"] = [*headers, *extra_headers]
                        break
                else:
                    message["headers"] = [*headers, _NO_STORE, *extra_headers]
            return send(message)

        span = span_token = None
        if tracer is not None and not probe:
            parent = propagate.extract(carrier) if carrier else None
            span = tracer.start(method, route, parent)
            span_token = tracer.activate(span, parent)

        error: BaseException | None = None
        # Admission: probes never count; a request with a body counts once the body is in
        # (``_BodyReceiver``); any other request now.
        body: _BodyReceiver | None = None
        admitted = shed = False
        if probe:
            pass
        elif chunked or (content_length is not None and content_length != b"0"):
            if (
                not chunked
                and not getattr(cycle, "more_body", True)
                and self.in_flight < self.limit
            ):
                # The server has the whole body already (it came with the head).
                self.in_flight += 1
                admitted = True
            else:
                body = _BodyReceiver(receive, self, chunked, self._max_body)
        elif self.in_flight >= self.limit:
            shed = True
        else:
            self.in_flight += 1
            admitted = True
        try:
            if shed:
                raise ServerBusy
            if content_length is not None and _too_large(content_length, self._max_body):
                raise BodyTooLarge(self._max_body)
            await (self._probes if probe else self.app)(
                scope, receive if body is None else body, send_with_headers
            )
        except Exception as exc:  # the last line of defence: log once, answer once
            error = exc
            if not status:
                if isinstance(exc, StarletteHTTPException) and exc.status_code in (413, 503):
                    await _send_problem(
                        send_with_headers,
                        exc.status_code,
                        exc.detail,
                        _RETRY_AFTER if exc.status_code == 503 else (),
                    )
                else:
                    await _send_problem(send_with_headers, 500, UNEXPECTED_ERROR)
        finally:
            if admitted or (body is not None and body.admitted):
                self.in_flight -= 1
            duration = perf_counter() - start
            if isinstance(error, (BodyTooLarge, ServerBusy)):
                error = None  # answered with its own status; no traceback to log
            elif error is not None:
                # Also after the response started (a failing stream or background task):
                # the request failed, so it is counted and logged as a 500.
                status = 500
            if getattr(cycle, "disconnected", False):
                # uvicorn's RequestResponseCycle: the client left before the response was
                # complete (fenced in tests/contract).
                status = CLIENT_CLOSED_REQUEST
            elif not status:  # no response was started: the server answers 500
                status = 500
            metrics.finish(started_slot, label_method, route, status, duration)
            trace_id = span_id = None
            if span is not None:
                if type(span) is not NonRecordingSpan:  # (whose end() does nothing)
                    if span.is_recording():
                        _finish_recording_span(span, scope, route, status, error)
                        ctx = span.get_span_context()
                        trace_id, span_id = ctx.trace_id, ctx.span_id
                    span.end()
                tracer.deactivate(span_token)
            if (self._access_log and not probe) or error is not None:
                self._log.request(
                    method,
                    path,
                    route,
                    status,
                    duration,
                    scope.get("client"),
                    rid,
                    trace_id,
                    span_id,
                    error,
                )
            request_id_var.reset(rid_token)


def _too_large(raw: bytes, limit: int) -> bool:
    try:
        return int(raw) > limit
    except ValueError:  # the HTTP parser rejects these first; be safe anyway
        return False


async def _send_problem(
    send: Send, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = problem_body(status, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _finish_recording_span(
    span: Any, scope: Scope, route: str, status: int, error: BaseException | None
) -> None:
    """Name, HTTP semantic-convention attributes and status of a sampled server span.

    ``url.query`` is left out on purpose: query strings carry tokens often enough that
    semantic conventions ask for redaction, and the route template says what was called.
    """
    method = scope["method"]
    client = scope.get("client")
    server = scope.get("server")
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "http.route": route,
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
        "http.response.status_code": status,
    }
    if client:
        attributes["client.address"] = client[0]
    if server:
        attributes["server.address"] = server[0]
        attributes["server.port"] = server[1]
    for name, value in scope["headers"]:
        if name == b"user-agent":
            attributes["user_agent.original"] = value.decode("latin-1")
            break
    name = f"{method} {route}"  # the route FastAPI matched, known only now
    if isinstance(span, ServerSpan):
        span.finish_server(name, attributes)
    else:
        span.update_name(name)
        span.set_attributes(attributes)
    if error is not None:
        span.record_exception(error)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
