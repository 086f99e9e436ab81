"""The team's routes: three levels of routers with path parameters, and the rest of what a
real service has (see the package docstring). Included under ``/team/v1`` and ``/team/v2``,
so the two versions must be two series."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, Field
from starlette.websockets import WebSocketDisconnect

ORDERS = Counter("team_orders", "Orders placed, by kind.", ["kind"])
ORDER_VALUE = Histogram("team_order_value", "Order value.", buckets=(1, 5, 10, 50))
OPEN_CARTS = Gauge("team_open_carts", "Carts being filled now.", multiprocess_mode="livesum")


class OrderIn(BaseModel):
    kind: str = Field(min_length=1, max_length=16)
    amount: float = Field(gt=0, le=1000)
    items: list[str] = Field(default_factory=list, max_length=50)
    note: str | None = Field(default=None, max_length=200)


class OrderOut(BaseModel):
    user: int
    order: int
    kind: str
    amount: float
    items: int
    pid: int


users = APIRouter(prefix="/users")
orders = APIRouter(prefix="/{uid}/orders")


@orders.post("/{oid}", response_model=OrderOut)
async def place_order(uid: int, oid: int, body: OrderIn) -> OrderOut:
    """Three routers deep, two path parameters, a pydantic body: a real route's shape."""
    OPEN_CARTS.inc()
    try:
        await asyncio.sleep(0.001)  # the database call a real route makes
        ORDERS.labels(body.kind).inc()
        ORDER_VALUE.observe(body.amount)
    finally:
        OPEN_CARTS.dec()
    return OrderOut(
        user=uid,
        order=oid,
        kind=body.kind,
        amount=body.amount,
        items=len(body.items),
        pid=os.getpid(),
    )


@orders.get("/{oid}")
async def get_order(uid: int, oid: int) -> dict[str, int]:
    return {"user": uid, "order": oid, "pid": os.getpid()}


@users.get("/{uid}")
async def get_user(uid: int) -> dict[str, int]:
    return {"user": uid, "pid": os.getpid()}


users.include_router(orders)

tools = APIRouter()


class Greeting(BaseModel):
    message: str


class EchoIn(BaseModel):
    message: str = Field(min_length=1, max_length=1000)


class EchoOut(BaseModel):
    message: str
    length: int


# The three small routes the platform's own tests drive (a greeting, an echoed body, an
# awaited delay): the platform tests use this app, never the sample API in app/api/.
@tools.get("/hello", response_model=Greeting)
async def hello(name: Annotated[str, Query(min_length=1, max_length=64)] = "world") -> Greeting:
    return Greeting(message=f"Hello, {name}!")


@tools.post("/echo", response_model=EchoOut)
async def echo(body: EchoIn) -> EchoOut:
    return EchoOut(message=body.message, length=len(body.message))


@tools.get("/wait")
async def wait(ms: Annotated[int, Query(ge=0, le=5000)]) -> dict[str, int]:
    await asyncio.sleep(ms / 1000)
    return {"waited_ms": ms}


@tools.get("/stream")
async def stream(n: Annotated[int, Query(ge=1, le=1000)] = 3, fail: bool = False):
    """``n`` chunks; with ``fail`` the generator raises after the first chunk was sent."""

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(n):
            if fail and i == 1:
                raise RuntimeError("the team's stream broke")
            yield f"chunk {i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


@tools.get("/blocking")
def blocking(ms: Annotated[int, Query(ge=0, le=2000)] = 10) -> dict[str, Any]:
    """A plain ``def`` route: FastAPI runs it in its thread pool."""
    time.sleep(ms / 1000)
    return {"slept_ms": ms, "pid": os.getpid()}


def _send_receipt(fail: bool) -> None:
    if fail:
        raise RuntimeError("the team's background task failed")


@tools.post("/background")
async def background(tasks: BackgroundTasks, fail: bool = False) -> dict[str, bool]:
    tasks.add_task(_send_receipt, fail)
    return {"queued": True}


@tools.get("/boom")
async def boom() -> None:
    raise RuntimeError("the team's handler failed")


@tools.get("/slow")
async def slow(ms: Annotated[int, Query(ge=0, le=10000)] = 100) -> dict[str, int]:
    await asyncio.sleep(ms / 1000)
    return {"waited_ms": ms}


@tools.get("/visits")
async def visits(request: Request) -> dict[str, int]:
    """Uses the lifespan's Redis client (``request.state`` is the lifespan state)."""
    store = request.state.redis
    if store is None:
        raise HTTPException(503, "no redis configured")
    return {"visits": int(await store.incr("team:visits")), "pid": os.getpid()}


@tools.get("/upstream")
async def upstream(request: Request) -> dict[str, Any]:
    """An outgoing call through the lifespan's instrumented httpx client."""
    response = await request.state.http.get("/hello")
    return {"upstream_status": response.status_code, "pid": os.getpid()}


@tools.websocket("/ws/{room}")
async def room(ws: WebSocket, room: str) -> None:
    """Echoes each text message with the room name; ``close`` closes with 4000."""
    await ws.accept()
    try:
        while True:
            text = await ws.receive_text()
            if text == "close":
                await ws.close(code=4000)
                return
            await ws.send_text(f"{room}: {text}")
    except WebSocketDisconnect:
        return


def routers() -> list[APIRouter]:
    """The team's top-level routers: the same tree under two API versions."""
    out = []
    for version in ("v1", "v2"):
        top = APIRouter(prefix=f"/team/{version}")
        top.include_router(users)
        top.include_router(tools)
        out.append(top)
    return out
