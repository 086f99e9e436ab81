"""What the platform hands the kit's own server (``protocol._Cycle``) instead of doing itself.

The response headers, written from pre-encoded lines (``_Cycle.head_suffix``), and the
admission of a request whose body the server already holds. Served in-process through the
worker's real protocol (``LimitedHttpToolsProtocol``, the httptools parser, uvicorn's
response writer) on a transport that records the bytes: the head on the wire must carry
each platform header exactly once, while the ASGI message uvicorn's ``send`` receives
carries none of them (they went to the server as pre-encoded lines), also through a team's
outer middleware that copies the scope and rebuilds the message, and for an early answer
(413) written while the body still arrives.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
from uvicorn.server import ServerState

from app.platform import lifecycle
from app.platform.app_factory import create_app
from app.platform.protocol import LimitedHttpToolsProtocol, _Cycle
from app.platform.settings import Settings

PLATFORM = (b"x-content-type-options", b"x-frame-options", b"content-security-policy")


class _Wire(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5555)}.get(name)

    def write(self, data: Any) -> None:
        self.data += bytes(data)

    def write_eof(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class RebuildingMiddleware:
    """A team's outer middleware that copies the scope and sends new message dicts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def rebuilt(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"x-team", b"1")]
                message = {"type": message["type"], "status": message["status"], "headers": headers}
            await send(dict(message))

        await self.app(dict(scope), receive, rebuilt)


def _routers() -> list[APIRouter]:
    router = APIRouter(prefix="/t")

    @router.get("/plain")
    async def plain() -> dict[str, str]:
        return {"ok": "yes"}

    @router.get("/cached")
    async def cached() -> Response:
        return Response(
            b"{}", media_type="application/json", headers={"Cache-Control": "max-age=9"}
        )

    @router.post("/upload")
    async def upload() -> dict[str, str]:
        return {"never": "reached"}

    @router.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        receive = request.receive
        return {
            "size": len(await request.body()),
            "receive_is_the_server_s": isinstance(getattr(receive, "__self__", None), _Cycle),
        }

    return [router]


def _serve(
    app: Any, request: bytes, *, complete: bool = True, rest: bytes = b""
) -> tuple[bytes, list[Message]]:
    """One request through the real protocol (``rest``: more bytes, sent once the app has
    started): the bytes written, and each message the server's ``send`` received."""
    messages: list[Message] = []
    original = RequestResponseCycle.send

    def spy(self: Any, message: Message) -> Any:
        messages.append(message)
        return original(self, message)

    async def run() -> bytes:
        config = Config(app=app, http=LimitedHttpToolsProtocol, lifespan="off", log_config=None)
        config.load()
        protocol = LimitedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
        wire = _Wire()
        protocol.connection_made(wire)
        protocol.data_received(request)
        if rest:
            await asyncio.sleep(0)  # the app starts and waits for the body
            protocol.data_received(rest)
        for _ in range(200):  # until the response is out (polled, not slept)
            await asyncio.sleep(0)
            if protocol.cycle is not None and protocol.cycle.response_complete:
                break
        assert protocol.cycle is not None and protocol.cycle.response_complete
        if complete:
            assert isinstance(protocol.cycle, _Cycle)
        return wire.data

    RequestResponseCycle.send = spy  # type: ignore[method-assign]
    try:
        return asyncio.run(run()), messages
    finally:
        RequestResponseCycle.send = original  # type: ignore[method-assign]


def _head(data: bytes) -> list[tuple[bytes, bytes]]:
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    return [tuple(line.split(b": ", 1)) for line in head]  # type: ignore[misc]


@pytest.fixture(autouse=True)
def _started() -> Iterator[None]:
    lifecycle.state.started = True
    yield
    lifecycle.state.started = False


@pytest.mark.parametrize("outer", [False, True], ids=["platform", "rebuilding-outer-middleware"])
def test_platform_headers_are_written_once_by_the_server(outer: bool) -> None:
    middleware = [Middleware(RebuildingMiddleware)] if outer else []
    app = create_app(Settings(), _routers(), middleware=middleware)
    request = b"GET /t/plain HTTP/1.1\r\nHost: x\r\nX-Request-ID: rid-42\r\n\r\n"
    data, messages = _serve(app, request)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b'{"ok":"yes"}')
    head = _head(data)
    names = [name for name, _ in head]
    for name in (*PLATFORM, b"cache-control", b"x-request-id"):
        assert names.count(name) == 1, (name, head)
    assert dict(head)[b"x-request-id"] == b"rid-42"
    assert dict(head)[b"cache-control"] == b"no-store"
    if outer:
        assert dict(head)[b"x-team"] == b"1"
    start = messages[0]
    assert start["type"] == "http.response.start"
    sent = {name for name, _ in start["headers"]}
    assert not sent & {*PLATFORM, b"cache-control", b"x-request-id"}, start["headers"]


def test_a_route_s_cache_control_is_kept_and_no_store_not_added() -> None:
    app = create_app(Settings(), _routers())
    data, _ = _serve(app, b"GET /t/cached HTTP/1.1\r\nHost: x\r\n\r\n")
    head = _head(data)
    assert [v for n, v in head if n == b"cache-control"] == [b"max-age=9"]
    assert dict(head)[b"x-frame-options"] == b"DENY"


def test_an_early_413_carries_the_headers_and_closes() -> None:
    """Content-Length over the limit: answered before the body is read (lingering close)."""
    app = create_app(Settings(max_body_bytes=10), _routers())
    request = (
        b"POST /t/upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n0123"
    )
    data, messages = _serve(app, request, complete=False)
    assert data.startswith(b"HTTP/1.1 413 ")
    head = dict(_head(data))
    assert head[b"connection"] == b"close"
    for name in (*PLATFORM, b"x-request-id"):
        assert name in head
    assert not {n for n, _ in messages[0]["headers"]} & set(PLATFORM)


@pytest.mark.parametrize("whole", [True, False], ids=["body-with-head", "body-still-arriving"])
def test_a_body_already_in_is_admitted_without_a_receive_wrapper(whole: bool) -> None:
    """A body that came with its head is admitted at once and the app reads the server's
    own ``receive``; one still arriving goes through ``_BodyReceiver``, admitted once in."""
    app = create_app(Settings(), _routers())
    body = b'{"k": "0123456789"}'
    head = (
        b"POST /t/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    if whole:
        data, _ = _serve(app, head + body)
    else:
        data, _ = _serve(app, head, rest=body)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
    got = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert got == {"size": len(body), "receive_is_the_server_s": whole}
    assert app.in_flight == 0
