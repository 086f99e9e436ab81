"""uvicorn's httptools protocol with deadlines and caps for hostile clients.

Head size: llhttp, uvicorn's default parser, accepts headers of any size, and gunicorn's
``limit_request_*`` settings do not reach uvicorn workers: a single client could make a
worker buffer a 50 MB header. Here the URL and header bytes of each request are counted
exactly as the parser reports them; past ``APP_MAX_HEADER_BYTES`` the client gets a 431
problem document and the connection is closed. Raw bytes received while still in the head
are counted too, so a single huge header cannot be buffered beyond the cap plus one read.

Head time: uvicorn has no timeout for a request head. A connection that sends nothing, or
a head a byte at a time (slowloris), stays open for as long as the client likes, and
enough of them exhaust the worker's file descriptors. Here a connection owes a complete
head within ``APP_HEADER_TIMEOUT_SECONDS``: counted from the connection's start for its
first request, and from the first byte of each later one (idle time between requests is
uvicorn's keep-alive timeout). Past it the client gets a 408 problem document if part of a
request arrived, and the connection is closed.

Body time: a request body must keep arriving: at most ``APP_BODY_TIMEOUT_SECONDS`` between
two reads of its bytes (nginx's ``client_body_timeout``). Time while reading is paused
because the application has not consumed what is buffered does not count. Past it the
application's next ``receive()`` raises :class:`BodyTimeout` (a 408, rendered as a problem
document by the app, with its request id and headers); if the response had already started
the connection is just closed. Starving ready requests is the middleware's side: a request
only counts against ``APP_MAX_CONCURRENT_REQUESTS`` once its body is in.

Write time: a response whose writes are blocked (transport above its high-water mark) and
whose write buffer has not shrunk for ``APP_BODY_TIMEOUT_SECONDS`` (the peer reads nothing)
is aborted, so a reader that takes nothing cannot hold a task, a slot or the buffered
response for ever. A reader taking a few bytes at a time is progress once the kernel takes
more of the response (as for nginx's ``send_timeout``); slowhttptest ``-X`` readers taking
32 bytes every 2 s of an 8 MiB response never free enough for that and are cut like
readers taking nothing. Meanwhile a response sent in one piece, as the app's are, holds no
slot (its handler has returned; its bytes wait in the worker's memory), while a streamed
one holds its request and slot until it is read or cut. The same deadline
bounds a WebSocket peer that reads nothing while the server sends
(:class:`LimitedWebSocketsProtocol`): uvicorn's ping timeout alone does not, as its close
waits for a write buffer that never drains, with the handler blocked in ``send``.

Cost: none of the HTTP deadlines arms a timer. Each costs a request at most one clock read (the
head's; a body read one per chunk that leaves the body incomplete): the server sweeps its
connections once a second (``worker.DrainingServer.on_tick``), so a slow client is cut
between the timeout and a second after it.

Early responses, those that start before the request (head and body) has been read: 413 from
``Content-Length`` (or once a chunked body passes the limit), 431, 408 (head or body
deadline), and any response the application sends before reading the whole body (a route
that answers without reading it). A 503 is never early: a request with a body is only
admitted (or shed) once its body is in. An early response carries ``Connection: close`` and
the connection is closed the way nginx does it, a *lingering close*: stop writing
(``write_eof``: the peer reads the whole response, then end-of-file), keep reading and
discarding what the client still sends, and close once it has gone quiet, or stopped
sending, or the bounds below are reached. Closing with unread bytes in the kernel's receive
buffer instead makes the kernel send a reset, which can destroy the response before the
client reads it (measured: about half of the Python ``urllib`` uploads of 2 MiB got
``BrokenPipeError`` instead of their 413).
Bounds: ``LINGER_SECONDS`` in all (nginx ``lingering_time`` 30 s), ``LINGER_IDLE_SECONDS``
without a byte (nginx ``lingering_timeout`` 5 s), ``LINGER_MAX_BYTES`` discarded; after a
408 the linger is short (``TIMEOUT_LINGER_SECONDS``): that client was already too slow.

uvicorn internals used (``uvicorn.protocols.http.httptools_impl``, 0.54), each pinned by a
contract test: ``HttpToolsProtocol`` attributes ``cycle``, ``transport``, ``flow``,
``loop``, ``logger``, ``server_state.total_requests`` and methods ``connection_made``,
``data_received``, ``on_url``, ``on_header``, ``on_headers_complete``,
``on_message_complete``, ``pause_writing``, ``resume_writing``,
``send_400_response``, ``_unset_keepalive_if_required``, ``handle_websocket_upgrade``,
``ws_protocol_class``; ``RequestResponseCycle``
(subclassed, and the module name ``httptools_impl.RequestResponseCycle`` rebound to the
subclass: ``on_headers_complete`` builds each cycle from it) with ``send``, ``receive``,
``on_response`` (the protocol's bound ``on_response_complete`` while the app runs, called
after ``transport.close()``; replaced while lingering),
``transport``, ``keep_alive``, ``more_body``, ``response_started``, ``response_complete``,
``disconnected``, ``message_event``, and its behaviour of writing ``connection: close``
and calling ``transport.close()`` after the last body message when ``keep_alive`` is
false; ``FlowControl.read_paused`` / ``resume_reading``; ``WebSocketsSansIOProtocol`` (the
protocol uvicorn picks when ``websockets`` is installed, subclassed) with ``loop``,
``logger``, ``transport``, ``queue``, ``close_sent``, ``pause_writing``, ``resume_writing``,
``connection_lost`` and ``keepalive_timeout`` (its pong deadline's callback).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from app.platform.errors import PROBLEM_JSON, problem_body
from app.platform.websockets import PING_TIMEOUT_KEY, PING_TIMEOUT_REASON

_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\n"
_MAX_READ = 256 * 1024  # asyncio's largest single read

LINGER_SECONDS = 30.0  # the longest a lingering close lasts (nginx lingering_time)
LINGER_IDLE_SECONDS = 5.0  # ... or this long without a byte from the client (lingering_timeout)
LINGER_MAX_BYTES = 16 * 1024 * 1024  # ... or once this much has been discarded
TIMEOUT_LINGER_SECONDS = 1.0  # after a 408: the client was too slow already


class HeadTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into an HttpParserError."""


class BodyTimeout(StarletteHTTPException):
    """Raised from ``receive`` once the request body stopped arriving; rendered as a 408."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"request body not complete: nothing received for {seconds:g}s")


class _LingerOnClose:
    """The transport an early response writes to: ``close()`` becomes a lingering close."""

    __slots__ = ("_protocol", "_seconds", "_transport")

    def __init__(self, protocol: LimitedHttpToolsProtocol, transport: Any, seconds: float) -> None:
        self._protocol = protocol
        self._transport = transport
        self._seconds = seconds

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._protocol.linger(self._seconds)


class _Cycle(RequestResponseCycle):
    """uvicorn's cycle, whose response says ``Connection: close`` and lingers when it
    starts while the request body is still arriving, and whose reads fail with a 408 once
    the body has stopped arriving (``expired``: the deadline in seconds).

    uvicorn builds it (the module name is rebound below): swapping ``__class__`` on each
    new cycle instead would cost every later attribute read of the cycle (measured: 10
    reads 0.3 -> 1.06 us, 2.7 us per request), since CPython then drops the instance's
    inline attribute values for a dict.
    """

    linger_seconds = LINGER_SECONDS
    expired = 0.0

    # Plain functions handing back uvicorn's coroutine: no coroutine of their own.
    def send(self, message: Any) -> Any:
        if self.more_body and not self.response_started and not self.disconnected:
            self._respond_early()
        return RequestResponseCycle.send(self, message)

    def receive(self) -> Any:
        if self.expired:
            return self._timed_out()
        return RequestResponseCycle.receive(self)

    def _respond_early(self) -> None:
        # on_response is the protocol's bound on_response_complete until the app returns.
        protocol = getattr(self.on_response, "__self__", None)
        if isinstance(protocol, LimitedHttpToolsProtocol):
            self.keep_alive = False  # uvicorn then writes "connection: close"
            self.transport = _LingerOnClose(  # type: ignore[assignment]
                protocol, self.transport, self.linger_seconds
            )

    async def _timed_out(self) -> Any:
        raise BodyTimeout(self.expired)


# HttpToolsProtocol.on_headers_complete creates its cycles from this module-level name.
# A plain HttpToolsProtocol (none is used by the kit) gets uvicorn's behaviour from it.
httptools_impl.RequestResponseCycle = _Cycle  # type: ignore[misc]


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """Head size, head/body/write deadlines and lingering close; limits set by the worker."""

    max_head_bytes = 32 * 1024
    head_timeout = 10.0
    body_timeout = 10.0
    # CORS headers for the answers written here (431, 408); None while CORS is off.
    cors: Callable[[bytes | None], bytes] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._raw_head = 0
        self._head = 0
        self._too_large = False
        self._head_since: float | None = None  # loop time the pending head began
        self._in_body = False  # between a head's end and its message's end
        self._body_since: float | None = None  # loop time of the last body read
        self._write_since: float | None = None  # loop time writes got blocked
        self._write_left = 0  # write buffer size at the last sweep while blocked
        self._linger_until: float | None = None  # set while lingering
        self._linger_last = 0.0
        self._linger_left = 0
        self._origin: bytes | None = None  # the pending head's Origin, kept while CORS is on

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._head_since = self.loop.time()  # a new connection owes its first head

    def data_received(self, data: bytes) -> None:
        if self._linger_until is not None:
            self._discard(len(data))
            return
        if self._in_head:
            if self._head_since is None:  # the first bytes of a later request
                self._head_since = self.loop.time()
            self._raw_head += len(data)
            if self._raw_head > self.max_head_bytes + _MAX_READ:
                self._refuse()
                return
        super().data_received(data)
        if self._in_body:  # this read left the body incomplete: its deadline restarts
            self._body_since = self.loop.time()

    def _count(self, size: int) -> None:
        self._head += size
        if self._head > self.max_head_bytes:
            self._too_large = True
            raise HeadTooLarge

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if self.cors is not None and name.lower() == b"origin":
            self._origin = value
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_since = None
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not previous:  # a request (not an upgrade): its body may follow
            self._in_body = True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._in_body = False
        self._body_since = None
        self._raw_head = self._head = 0
        self._origin = None

    def pause_writing(self) -> None:
        super().pause_writing()
        self._write_since = self.loop.time()
        self._write_left = 1 << 62  # the first sweep records the buffer's size

    def resume_writing(self) -> None:
        super().resume_writing()
        self._write_since = None

    def handle_websocket_upgrade(self) -> None:
        # uvicorn's own WebSocket protocol, with the write deadline (only on an upgrade).
        if self.ws_protocol_class is WebSocketsSansIOProtocol:
            self.ws_protocol_class = LimitedWebSocketsProtocol
        super().handle_websocket_upgrade()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers any parser error with 400; ours gets its precise status.
        if self._too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    # The once-a-second sweep (worker.DrainingServer.on_tick)

    def sweep(self, now: float) -> None:
        """Enforce every deadline of this connection at loop time ``now``."""
        transport = self.transport
        if transport is None:
            return
        if self._write_since is not None:  # also once closing: close() waits for the buffer
            self.expire_stalled_write(now)
        if transport.is_closing():
            return
        if self._linger_until is not None:
            if now >= self._linger_until or now - self._linger_last >= LINGER_IDLE_SECONDS:
                if transport.get_write_buffer_size():  # the response itself was not read
                    transport.abort()
                else:
                    transport.close()
            return
        if self._head_since is not None:
            self.expire_slow_head(now)
        elif self._body_since is not None:
            self.expire_slow_body(now)

    def expire_slow_head(self, now: float) -> None:
        """Close the connection if its pending head is older than ``head_timeout``."""
        since = self._head_since
        if since is None or now - since < self.head_timeout or self.transport is None:
            return
        self._head_since = None
        self._in_head = False
        if self._raw_head:  # part of a request came: say why it ends
            self.logger.warning("request head not complete within %gs", self.head_timeout)
            self._close_with(
                _TIMEOUT,
                problem_body(408, f"request head not complete within {self.head_timeout:g}s"),
                TIMEOUT_LINGER_SECONDS,
            )
        elif not self.transport.is_closing():
            self.transport.close()

    def expire_slow_body(self, now: float) -> None:
        """Fail the request whose body has not advanced for ``body_timeout``."""
        since = self._body_since
        if since is None or self.transport is None:
            return
        if self.flow.read_paused:  # the application has not taken what is buffered
            self._body_since = now
            return
        if now - since < self.body_timeout:
            return
        self._body_since = None
        self._in_body = False
        cycle = self.cycle
        self.logger.warning("request body not complete: nothing for %gs", self.body_timeout)
        if not isinstance(cycle, _Cycle) or cycle.response_started or cycle.response_complete:
            self.transport.close()
            return
        # The application answers (408 problem, its own headers); the response, which
        # starts with the body unread, closes with a linger.
        cycle.expired = self.body_timeout
        cycle.linger_seconds = TIMEOUT_LINGER_SECONDS
        cycle.message_event.set()  # wake a receive() in progress: the next one raises

    def expire_stalled_write(self, now: float) -> None:
        """Cut a response whose writes have been blocked for ``body_timeout``."""
        since = self._write_since
        left = self.transport.get_write_buffer_size()
        if since is None or left == 0:
            return
        previous, self._write_left = self._write_left, left
        if 0 <= left < previous:  # the client took some: the deadline restarts
            self._write_since = now
            return
        if now - since >= self.body_timeout:
            self.logger.warning("response not read by the client for %gs", self.body_timeout)
            self._write_since = None
            self.transport.abort()

    # Lingering close

    def linger(self, seconds: float) -> None:
        """Stop writing, discard what the client still sends, close when it is done."""
        transport = self.transport
        if transport is None or transport.is_closing() or self._linger_until is not None:
            return
        now = self.loop.time()
        self._linger_until = now + seconds
        self._linger_last = now
        self._linger_left = LINGER_MAX_BYTES
        self._head_since = self._body_since = None
        self._in_head = self._in_body = False
        self._unset_keepalive_if_required()
        if self.cycle is not None:
            # The cycle calls it right after close(): instead of uvicorn's (which would arm
            # the keep-alive timer and start a pipelined request), only the count.
            self.cycle.on_response = self._lingering_response_complete
        if transport.can_write_eof():
            transport.write_eof()  # after the buffered response: the client sees its end
        else:  # pragma: no cover - TLS transports cannot half-close
            transport.close()
            return
        self.flow.resume_reading()

    def _lingering_response_complete(self) -> None:
        self.server_state.total_requests += 1

    def _discard(self, size: int) -> None:
        self._linger_left -= size
        self._linger_last = self.loop.time()
        if self._linger_left <= 0:
            self.transport.close()

    def _refuse(self) -> None:
        body = problem_body(431, f"request line and headers exceed {self.max_head_bytes} bytes")
        self.logger.warning("request head over %d bytes refused", self.max_head_bytes)
        self._in_head = False
        self._head_since = None
        self._close_with(_TOO_LARGE, body, LINGER_SECONDS)

    def _close_with(self, status_line: bytes, body: bytes, linger: float) -> None:
        if not self.transport.is_closing():
            cors = self.cors(self._origin) if self.cors is not None else b""
            self.transport.write(
                status_line
                + cors
                + b"content-type: "
                + PROBLEM_JSON.encode()
                + b"\r\n"
                + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
                + body
            )
            self.linger(linger)


class LimitedWebSocketsProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol with the stalled-write deadline of HTTP responses.

    A peer that reads nothing while the server sends fills the socket buffers, then the
    transport's: writes pause and the handler's next ``send`` waits for ever. uvicorn's ping
    timeout does not end that (its ``transport.close()`` waits for the buffer to drain), nor
    does the idle limit (the handler is sending, not receiving). Here, once writes have been
    paused for ``APP_BODY_TIMEOUT_SECONDS`` without the buffer shrinking, the connection is
    aborted: the handler's ``send`` fails with a disconnect and the socket is freed. A timer
    armed only while writes are paused: no cost for a peer that keeps up.

    A ping timeout is also told to the handler (``websocket.disconnect``, 1011, reason
    :data:`PING_TIMEOUT_REASON`) rather than the 1005 uvicorn reports once the socket is
    gone, so the access line says why the session ended.
    """

    _stall: asyncio.TimerHandle | None = None
    _stall_left = 0

    def pause_writing(self) -> None:
        super().pause_writing()
        self._arm(self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        super().resume_writing()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, left: int) -> None:
        """Check again in ``APP_BODY_TIMEOUT_SECONDS`` whether the buffer (``left`` bytes
        now) has shrunk."""
        self._stall_left = left
        self._stall = self.loop.call_later(LimitedHttpToolsProtocol.body_timeout, self._stalled)

    def _disarm(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _stalled(self) -> None:
        self._stall = None
        left = self.transport.get_write_buffer_size()
        if left == 0:
            return
        if left < self._stall_left:  # the peer took some: the deadline restarts
            self._arm(left)
            return
        seconds = LimitedHttpToolsProtocol.body_timeout
        self.logger.warning("websocket messages not read by the peer for %gs", seconds)
        self.transport.abort()

    def keepalive_timeout(self) -> None:
        if not (self.close_sent or self.transport.is_closing()):
            self.queue.put_nowait(
                {
                    "type": "websocket.disconnect",
                    "code": 1011,
                    "reason": PING_TIMEOUT_REASON,
                    PING_TIMEOUT_KEY: True,
                }
            )
        super().keepalive_timeout()
