"""The team's routes plus the ones the hostile-client tests need (issue 16), inside the platform.

Served by the real master: ``gunicorn -c gunicorn.conf.py tests.resilience.attack_app:app``.

- ``GET /attack/big?kb=N``: a one-shot response of N KiB (default 512), large enough that a
  slow reader cannot take it into its socket buffers (slowhttptest ``-X``);
- ``GET /attack/big-stream?kb=N``: the same bytes streamed 16 KiB at a time, so the request
  stays in progress until the client has taken (almost) all of it (the ``-X`` control);
- ``WS /attack/ws``: echoes text messages; it never closes on its own, so only the peer,
  the platform's idle limit, uvicorn's ping timeout or the drain can end a session;
- ``WS /attack/ws-flood``: sends 64 KiB messages as fast as the peer takes them, never
  receives: a peer that reads nothing is bounded only by the write deadline;
- ``GET /attack/tasks``: this worker's pid and its count of asyncio tasks (the disconnect
  test's leak check); a test app's debug route, in no production app.

``ATTACK_PLAIN_CLOSE=1`` replaces the protocol's lingering close by a plain close (what
uvicorn does): the negative control of the early-response tests.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket
from fastapi.responses import Response, StreamingResponse
from starlette.websockets import WebSocketDisconnect

from app.platform.app_factory import create_app
from app.platform.protocol import LimitedHttpToolsProtocol
from app.platform.settings import load_settings_or_exit
from tests.teamapp import api

router = APIRouter(prefix="/attack")


@router.get("/big")
async def big(kb: Annotated[int, Query(ge=1, le=8192)] = 512) -> Response:
    return Response(b"x" * (kb * 1024), media_type="application/octet-stream")


@router.get("/big-stream")
async def big_stream(kb: Annotated[int, Query(ge=1, le=8192)] = 512) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(0, kb, 16):
            yield b"x" * (16 * 1024)

    return StreamingResponse(chunks(), media_type="application/octet-stream")


@router.get("/tasks")
async def tasks() -> dict[str, int]:
    return {"pid": os.getpid(), "tasks": len(asyncio.all_tasks())}


@router.websocket("/ws")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except WebSocketDisconnect:
        return


@router.websocket("/ws-flood")
async def flood(ws: WebSocket) -> None:
    await ws.accept()
    message = b"f" * (64 * 1024)
    try:
        while True:
            await ws.send_bytes(message)
    except WebSocketDisconnect:
        return


def _close_at_once(self: LimitedHttpToolsProtocol, seconds: float) -> None:
    self.transport.close()


if os.environ.get("ATTACK_PLAIN_CLOSE") == "1":
    LimitedHttpToolsProtocol.linger = _close_at_once  # type: ignore[method-assign]

settings = load_settings_or_exit()
# The team's routers (not the sample API's): the platform's tests never depend on app/api/.
# Its lifespan is left out: the routes used here (/team/v1/hello, /team/v1/echo) need none.
app = create_app(settings, [*api.routers(), router], title="attack-target")
