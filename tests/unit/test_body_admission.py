"""Admission of a request whose body the server already holds, on the worker's real protocol.

Served in-process through ``LimitedHttpToolsProtocol`` (the httptools parser, uvicorn's
cycle) on a transport that records the bytes: a body that came with its head is admitted
at once and the app reads the server's own ``receive`` (no ``_BodyReceiver`` layer); a
body still arriving when the app starts goes through ``_BodyReceiver``, and is admitted
once it is in.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, Request
from uvicorn.config import Config
from uvicorn.server import ServerState

from app.platform import lifecycle
from app.platform.app_factory import create_app
from app.platform.protocol import LimitedHttpToolsProtocol, _Cycle
from app.platform.settings import Settings
from tests.support.transport import RecordingTransport

BODY = b'{"k": "0123456789"}'
HEAD = (
    b"POST /t/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY)
)


def _routers() -> list[APIRouter]:
    router = APIRouter(prefix="/t")

    @router.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        receive = request.receive
        return {
            "size": len(await request.body()),
            "receive_is_the_server_s": isinstance(getattr(receive, "__self__", None), _Cycle),
        }

    return [router]


def _serve(app: Any, request: bytes, rest: bytes = b"") -> bytes:
    """One request through the real protocol (``rest``: more bytes, sent once the app has
    started): the bytes written."""

    async def run() -> bytes:
        config = Config(app=app, http=LimitedHttpToolsProtocol, lifespan="off", log_config=None)
        config.load()
        protocol = LimitedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
        wire = RecordingTransport()
        protocol.connection_made(wire)
        protocol.data_received(request)
        if rest:
            await asyncio.sleep(0)  # the app starts and waits for the body
            protocol.data_received(rest)
        for _ in range(200):  # until the response is out (polled, not slept)
            await asyncio.sleep(0)
            if protocol.cycle is not None and protocol.cycle.response_complete:
                break
        assert isinstance(protocol.cycle, _Cycle) and protocol.cycle.response_complete
        return wire.written

    return asyncio.run(run())


@pytest.fixture(autouse=True)
def _started() -> Iterator[None]:
    lifecycle.state.started = True
    yield
    lifecycle.state.started = False


@pytest.mark.parametrize("whole", [True, False], ids=["body-with-head", "body-still-arriving"])
def test_a_body_already_in_is_admitted_without_a_receive_wrapper(whole: bool) -> None:
    """A body that came with its head is admitted at once and the app reads the server's
    own ``receive``; one still arriving goes through ``_BodyReceiver``, admitted once in."""
    app = create_app(Settings(), _routers())
    data = _serve(app, HEAD + BODY) if whole else _serve(app, HEAD, rest=BODY)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
    got = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert got == {"size": len(BODY), "receive_is_the_server_s": whole}
    assert app.in_flight == 0


def test_a_body_already_in_is_still_shed_at_the_limit() -> None:
    app = create_app(Settings(max_concurrent_requests=1), _routers())
    app.in_flight = 1  # a request in flight already
    data = _serve(app, HEAD + BODY)
    assert data.startswith(b"HTTP/1.1 503 "), data
    assert b"\r\nretry-after: 1\r\n" in data
    assert app.in_flight == 1
