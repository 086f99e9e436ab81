"""Route templates of nested routers, and admission of requests with a body (in-process)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.testclient import TestClient

from app.platform import lifecycle
from app.platform.app_factory import create_app
from app.platform.routes import UNMATCHED_ROUTE, WEBSOCKET, RouteResolver
from app.platform.settings import Settings


def nested_app() -> FastAPI:
    orders = APIRouter(prefix="/{uid}/orders")
    orders.add_api_route("/{oid}", lambda uid, oid: {}, methods=["GET"])
    users = APIRouter(prefix="/users")
    users.add_api_route("/me", lambda: {}, methods=["GET"])
    users.add_api_route("/{uid}", lambda uid: {}, methods=["GET", "DELETE"])

    async def ws(websocket: WebSocket) -> None: ...

    users.add_api_websocket_route("/{uid}/feed", ws)
    users.include_router(orders)
    app = FastAPI()
    for version in ("v1", "v2"):
        top = APIRouter(prefix=f"/api/{version}")
        top.include_router(users)
        app.include_router(top)
    sub = FastAPI()
    sub.include_router(users)
    app.mount("/admin", sub)
    return app


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", "/api/v1/users/7", "/api/v1/users/{uid}"),
        ("GET", "/api/v2/users/7", "/api/v2/users/{uid}"),
        ("GET", "/api/v1/users/me", "/api/v1/users/me"),  # declared first: static wins
        ("GET", "/api/v1/users/7/orders/9", "/api/v1/users/{uid}/orders/{oid}"),
        ("POST", "/api/v1/users/7", "/api/v1/users/{uid}"),  # 405: still the route
        (WEBSOCKET, "/api/v1/users/7/feed", "/api/v1/users/{uid}/feed"),
        ("GET", "/admin/users/3/orders/4", "/admin/users/{uid}/orders/{oid}"),
        ("GET", "/nope/1", UNMATCHED_ROUTE),
        ("GET", "/readyz", "/readyz"),
    ],
)
def test_full_templates_at_any_depth(method: str, path: str, template: str) -> None:
    app = nested_app()
    assert RouteResolver(lambda: app.routes).resolve(method, path) == template


def test_routes_added_after_create_app_are_labelled() -> None:
    """The table is built on the first request, after the team added its last route."""
    app = create_app(Settings(), [])
    late = APIRouter(prefix="/late")
    late.add_api_route("/{x}", lambda x: {"x": x}, methods=["GET"])
    app.api.include_router(late)
    with TestClient(app) as client:
        assert client.get("/late/1").status_code == 200
        assert app._routes.resolve("GET", "/late/2") == "/late/{x}"


@pytest.mark.anyio
async def test_a_request_still_sending_its_body_holds_no_slot() -> None:
    """Limit 1: a request whose body never finishes does not make the next request 503;
    once the body is in, the request is admitted (and a third one is shed meanwhile)."""
    gate = asyncio.Event()
    router = APIRouter()

    @router.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        body = await request.body()
        await gate.wait()
        return {"size": len(body)}

    @router.get("/quick")
    async def quick() -> dict[str, bool]:
        return {"ok": True}

    app = create_app(Settings(max_concurrent_requests=1), [router])
    lifecycle.state.started = True
    more = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def trickle() -> dict[str, Any]:
        if not sent:
            sent.append({})
            return {"type": "http.request", "body": b"ab", "more_body": True}
        await more.wait()
        return {"type": "http.request", "body": b"cd", "more_body": False}

    def scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        return {
            "type": "http",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
            "http_version": "1.1",
            "scheme": "http",
            "server": ("t", 80),
            "client": ("c", 1),
            "root_path": "",
        }

    async def call(method: str, path: str, headers: list[tuple[bytes, bytes]], receive: Any) -> int:
        out: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            out.append(message)

        await app(scope(method, path, headers), receive, send)
        return out[0]["status"]

    async def empty() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    try:
        upload_task = asyncio.ensure_future(
            call("POST", "/upload", [(b"content-length", b"4")], trickle)
        )
        while not sent:  # noqa: ASYNC110 (poll until the first chunk was read)
            await asyncio.sleep(0.001)
        assert app.in_flight == 0
        assert await call("GET", "/quick", [], empty) == 200  # not starved
        more.set()
        while app.in_flight == 0:  # noqa: ASYNC110 (poll until the body is in)
            await asyncio.sleep(0.001)
        assert await call("GET", "/quick", [], empty) == 503  # the slot is taken now
        gate.set()
        assert await upload_task == 200
        assert app.in_flight == 0
    finally:
        lifecycle.state.started = False
