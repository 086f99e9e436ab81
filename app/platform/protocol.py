"""uvicorn's httptools protocol with a cap on the request head's size and on its time.

Size: llhttp, uvicorn's default parser, accepts headers of any size, and gunicorn's
``limit_request_*`` settings do not reach uvicorn workers: a single client could make a
worker buffer a 50 MB header. Here the URL and header bytes of each request are counted
exactly as the parser reports them; past ``APP_MAX_HEADER_BYTES`` the client gets a 431
problem document and the connection is closed. Raw bytes received while still in the head
are counted too, so a single huge header cannot be buffered beyond the cap plus one read.

Time: uvicorn has no timeout for a request head. A connection that sends nothing, or a
head a byte at a time (slowloris), stays open for as long as the client likes, and enough
of them exhaust the worker's file descriptors. Here a connection owes a complete head
within ``APP_HEADER_TIMEOUT_SECONDS``: counted from the connection's start for its first
request, and from the first byte of each later one (idle time between requests is
uvicorn's keep-alive timeout). Past it the client gets a 408 problem document if part of a
request arrived, and the connection is closed. The check costs a request one clock read:
the server sweeps its connections once a second (``worker.DrainingServer.on_tick``), so a
slow head is cut between the timeout and a second after it.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.platform.errors import PROBLEM_JSON, problem_body

_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\n"
_MAX_READ = 256 * 1024  # asyncio's largest single read


class HeadTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into an HttpParserError."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """Counts head bytes and head time per request; the limits are set by the worker at boot."""

    max_head_bytes = 32 * 1024
    head_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._raw_head = 0
        self._head = 0
        self._too_large = False
        self._head_since: float | None = None  # loop time the pending head began

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._head_since = self.loop.time()  # a new connection owes its first head

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if self._head_since is None:  # the first bytes of a later request
                self._head_since = self.loop.time()
            self._raw_head += len(data)
            if self._raw_head > self.max_head_bytes + _MAX_READ:
                self._refuse()
                return
        super().data_received(data)

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
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_since = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._raw_head = self._head = 0

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers any parser error with 400; ours gets its precise status.
        if self._too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

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
            )
        elif not self.transport.is_closing():
            self.transport.close()

    def _refuse(self) -> None:
        body = problem_body(431, f"request line and headers exceed {self.max_head_bytes} bytes")
        self.logger.warning("request head over %d bytes refused", self.max_head_bytes)
        self._in_head = False
        self._head_since = None
        self._close_with(_TOO_LARGE, body)

    def _close_with(self, status_line: bytes, body: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(
                status_line
                + b"content-type: "
                + PROBLEM_JSON.encode()
                + b"\r\n"
                + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
                + body
            )
            self.transport.close()
