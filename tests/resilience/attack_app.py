"""The team's routes plus two the hostile-client tests need (issue 16), inside the platform.

Served by the real master: ``gunicorn -c gunicorn.conf.py tests.resilience.attack_app:app``.

- ``GET /attack/big?kb=N``: a one-shot response of N KiB (default 512), large enough that a
  slow reader cannot take it into its socket buffers (slowhttptest ``-X``);
- ``WS /attack/ws``: echoes text messages; it never closes on its own, so only the peer,
  the platform's idle limit, uvicorn's ping timeout or the drain can end a session.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, WebSocket
from fastapi.responses import Response
from starlette.websockets import WebSocketDisconnect

from app.platform.app_factory import create_app
from app.platform.settings import load_settings_or_exit
from tests.teamapp import api

router = APIRouter(prefix="/attack")


@router.get("/big")
async def big(kb: Annotated[int, Query(ge=1, le=8192)] = 512) -> Response:
    return Response(b"x" * (kb * 1024), media_type="application/octet-stream")


@router.websocket("/ws")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except WebSocketDisconnect:
        return


settings = load_settings_or_exit()
# The team's routers (not the sample API's): the platform's tests never depend on app/api/.
# Its lifespan is left out: the routes used here (/team/v1/hello, /team/v1/echo) need none.
app = create_app(settings, [*api.routers(), router], title="attack-target")
