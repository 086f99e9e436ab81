"""WebSocket sessions through the platform: request id, metrics, one log line, idle limit, drain.

``PlatformMiddleware`` hands every ``websocket`` scope to :class:`WebSocketSessions`, which
wraps the app's ``receive`` and ``send`` for the life of the connection:

- request id: the caller's valid ``X-Request-ID`` or a fresh one, bound for every log line of
  the session and sent back on the handshake response (``websocket.accept`` headers);
- metrics: ``websocket_connections_in_progress{route}`` while open, then
  ``websocket_connections_total{route,code}`` and ``websocket_connection_duration_seconds``
  by close code (the app's close code, the peer's, 1001 on drain, 1011 when the handler
  raised, 1006 when the connection died without a close frame);
- one access line per connection (``event: "websocket"``) with ``route``, ``path``,
  ``close_code``, ``closed_by``, ``duration_ms``, ``messages_in`` / ``messages_out``,
  ``client_ip`` and ``request_id``, written when it closes (``APP_ACCESS_LOG``); a handler
  that raised logs an error line with the traceback whatever the setting;
- idle limit: while the handler waits for the peer, a peer silent for
  ``APP_WS_IDLE_TIMEOUT_SECONDS`` is closed (1000, "idle timeout"); a dead peer is found
  sooner by uvicorn's protocol pings (``APP_WS_PING_INTERVAL_SECONDS`` /
  ``APP_WS_PING_TIMEOUT_SECONDS``, set in ``worker.py``): 1011, ``closed_by: "ping"``; a
  peer that reads nothing while the handler sends is cut by the stalled-write deadline
  (``APP_BODY_TIMEOUT_SECONDS``, ``protocol.LimitedWebSocketsProtocol``): 1006;
- drain: when ``APP_SHUTDOWN_DELAY_SECONDS`` has passed after SIGTERM
  (``lifecycle.state.end_drain``), every open session is closed with 1001 ("going away")
  and the handler's pending ``receive`` returns ``websocket.disconnect``, so a worker is not
  held past the drain by sockets that would otherwise stay open until the graceful timeout.

Sessions get no span: a connection can live for hours, far longer than a trace.
"""

from __future__ import annotations

import asyncio
import re
from random import getrandbits
from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.platform import lifecycle
from app.platform.context import request_id_var
from app.platform.logging import get_logger
from app.platform.metrics import HttpMetrics
from app.platform.routes import WEBSOCKET, RouteResolver

GOING_AWAY = 1001
NORMAL = 1000
INTERNAL_ERROR = 1011
ABNORMAL = 1006  # no close frame (RFC 6455 7.1.5): the connection just ended
# uvicorn's close reason on a ping timeout; protocol.py also hands it to the handler
PING_TIMEOUT_REASON = "keepalive ping timeout"
# Set on the disconnect message ``protocol.LimitedWebSocketsProtocol`` sends for a ping
# timeout of its own: a client's close frame can carry the same code and reason (the
# ``websockets`` client's own keepalive uses them), so the reason cannot tell the two apart.
PING_TIMEOUT_KEY = "app.platform.ping_timeout"
_valid_request_id = re.compile(rb"[A-Za-z0-9._-]{1,128}").fullmatch


class _Session:
    """One connection's state, wrapping ``receive`` and ``send`` (see the module docstring)."""

    def __init__(
        self, receive: Receive, send: Send, request_id: bytes, idle_timeout: float
    ) -> None:
        self._receive = receive
        self._send = send
        self._rid_header = (b"x-request-id", request_id)
        self._idle = idle_timeout
        self._closing: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = False
        self.close_code: int | None = None
        self.closed_by = ""
        self.messages_in = 0
        self.messages_out = 0

    async def receive(self) -> Message:
        if self._closing.done():
            return {"type": "websocket.disconnect", "code": self._closing.result()}
        pending = asyncio.ensure_future(self._receive())
        timeout = self._idle if self.accepted else None
        done, _ = await asyncio.wait(
            (pending, self._closing), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if pending in done:
            message = pending.result()
            kind = message["type"]
            if kind == "websocket.receive":
                self.messages_in += 1
            elif kind == "websocket.disconnect" and self.close_code is None:
                self.close_code = message.get("code", ABNORMAL)
                self.closed_by = "ping" if message.get(PING_TIMEOUT_KEY) else "client"
            return message
        pending.cancel()
        if not self._closing.done():  # the idle limit passed
            await self.close(NORMAL, "idle timeout", by="idle")
        return {"type": "websocket.disconnect", "code": self._closing.result()}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            self.messages_out += 1
        elif kind == "websocket.accept":
            self.accepted = True
            message["headers"] = [*message.get("headers", ()), self._rid_header]
        elif kind == "websocket.close" and self.close_code is None:
            self.close_code = message.get("code", NORMAL)
            self.closed_by = "server"
        await self._send(message)

    async def close(self, code: int, reason: str, *, by: str) -> None:
        """Close from the platform's side (drain or idle) and release a pending ``receive``."""
        if self._closing.done():
            return
        self._closing.set_result(code)
        if self.close_code is None:
            self.close_code = code
            self.closed_by = by
            if self.accepted:
                try:
                    await self._send({"type": "websocket.close", "code": code, "reason": reason})
                except Exception:  # the peer is gone already; nothing left to tell it
                    return

    def close_soon(self, code: int, reason: str, by: str) -> None:
        """:meth:`close` from synchronous code (the worker's drain callback)."""
        task = asyncio.get_running_loop().create_task(self.close(code, reason, by=by))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class WebSocketSessions:
    """The platform's handling of ``websocket`` scopes; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: RouteResolver,
        metrics: HttpMetrics,
        idle_timeout: float,
        access_log: bool,
    ) -> None:
        self.app = app
        self._routes = routes
        self._metrics = metrics
        self._idle = idle_timeout
        self._access_log = access_log
        self._log = get_logger("app.access")
        self._error_log = get_logger("app.error")
        self.open: set[_Session] = set()
        lifecycle.state.drain_ended.append(self.close_all)

    def close_all(self) -> None:
        """Close every open session with 1001 (called when the drain delay ends)."""
        for session in list(self.open):
            session.close_soon(GOING_AWAY, "server shutting down", "drain")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = perf_counter()
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value
                break
        if request_id is None or not _valid_request_id(request_id):
            request_id = f"{getrandbits(128):032x}".encode("ascii")
        rid = request_id.decode("ascii")
        rid_token = request_id_var.set(rid)
        route = self._routes.resolve(WEBSOCKET, scope["path"])
        slot = self._metrics.websocket_open(route)
        session = _Session(receive, send, request_id, self._idle)
        self.open.add(session)
        error: BaseException | None = None
        try:
            await self.app(scope, session.receive, session.send)
        except Exception as exc:
            error = exc
            raise  # uvicorn closes with 1011 (or answers the handshake with 500)
        finally:
            self.open.discard(session)
            code = session.close_code
            if error is not None and code is None:
                code, session.closed_by = INTERNAL_ERROR, "server"
            elif code is None:
                code = ABNORMAL
            seconds = perf_counter() - start
            self._metrics.websocket_close(slot, route, code, seconds)
            fields = {
                "path": scope["path"],
                "route": route,
                "close_code": code,
                "closed_by": session.closed_by or "unknown",
                "duration_ms": round(seconds * 1000, 3),
                "messages_in": session.messages_in,
                "messages_out": session.messages_out,
                "client_ip": (scope.get("client") or (None,))[0],
                "request_id": rid,
            }
            if error is not None:
                self._error_log.error("websocket", exc_info=error, **fields)
            elif self._access_log:
                self._log.info("websocket", **fields)
            request_id_var.reset(rid_token)
