"""uvicorn's httptools protocol with a cap on the request head (request line + headers).

llhttp, uvicorn's default parser, accepts headers of any size, and gunicorn's
``limit_request_*`` settings do not reach uvicorn workers: a single client could make a
worker buffer a 50 MB header. Here the URL and header bytes of each request are counted
exactly as the parser reports them; past ``APP_MAX_HEADER_BYTES`` the client gets a 431
problem document and the connection is closed. Raw bytes received while still in the head
are counted too, so a single huge header cannot be buffered beyond the cap plus one read.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.platform.errors import PROBLEM_JSON, problem_body

_STATUS = b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
_MAX_READ = 256 * 1024  # asyncio's largest single read


class HeadTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into an HttpParserError."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """Counts head bytes per request; ``max_head_bytes`` is set by the worker at boot."""

    max_head_bytes = 32 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._raw_head = 0
        self._head = 0
        self._too_large = False

    def data_received(self, data: bytes) -> None:
        if self._in_head:
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

    def _refuse(self) -> None:
        body = problem_body(431, f"request line and headers exceed {self.max_head_bytes} bytes")
        self.logger.warning("request head over %d bytes refused", self.max_head_bytes)
        self._in_head = False
        if not self.transport.is_closing():
            self.transport.write(
                _STATUS
                + b"content-type: "
                + PROBLEM_JSON.encode()
                + b"\r\n"
                + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
                + body
            )
            self.transport.close()
