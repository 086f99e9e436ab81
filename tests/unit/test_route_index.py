"""The one-step dispatch of nested routes (``dispatch.RouteIndex``) against FastAPI's own.

Differential: one set of a team's routers (nesting, shadowing, two methods on a path,
router dependencies and overrides, default response classes, body and form limits, mounts,
Starlette routes, routes on the app itself, a route added after the first request) is
served by two apps built the same way, one with the index and one without
(``create_app(..., route_index=False)``), and every request of a matrix must get the same
status, headers and body from both. Each request is also checked for the path it took: the
index must serve the ones it is meant to (else the test passes with the index removed), and
leave the others to FastAPI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.responses import JSONResponse
from starlette.routing import Mount

from app.platform import lifecycle
from app.platform.app_factory import PlatformApp, create_app
from app.platform.settings import Settings

_trace: list[str] = []


def _describe(request: Request) -> dict[str, Any]:
    """What a handler sees of the routing: the scope entries FastAPI sets."""
    route = request.scope["route"]
    return {
        "route": route.path,
        "endpoint": request.scope["endpoint"].__name__,
        "params": request.path_params,
        "router_is_app_router": request.scope["router"] is request.app.router,
    }


async def require_token(x_token: Annotated[str | None, Header()] = None) -> None:
    if x_token != "secret":
        raise HTTPException(401, "token required")


async def tracked() -> AsyncIterator[None]:
    _trace.append("enter")
    yield
    _trace.append("exit")


def current_tenant() -> str:
    return "from-dependency"


class TracedRoute(APIRoute):
    """A team's route class with its own ``handle``: the index must go through it."""

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        _trace.append(f"handle {self.path}")
        await super().handle(scope, receive, send)


def team_routers() -> list[APIRouter]:
    orders = APIRouter(prefix="/{uid}/orders")

    @orders.get("/{oid:int}", name="get_order")
    async def get_order(uid: int, oid: int, request: Request) -> dict[str, Any]:
        return {
            **_describe(request),
            "url_for": str(request.url_for("get_order", uid=uid, oid=oid)),
        }

    @orders.post("/{oid}", status_code=201)
    async def place_order(uid: int, oid: int, request: Request) -> dict[str, Any]:
        return {**_describe(request), "body": (await request.json())}

    @orders.get("/{oid}/raw", response_class=PlainTextResponse)
    async def raw_order(oid: str) -> str:
        return f"order {oid}"

    users = APIRouter(prefix="/users", dependencies=[Depends(tracked)])

    @users.get("/me")
    async def me(request: Request, tenant: Annotated[str, Depends(current_tenant)]) -> Any:
        return {**_describe(request), "tenant": tenant}

    @users.get("/{uid}")
    async def get_user(uid: int, request: Request) -> dict[str, Any]:
        return _describe(request)

    @users.delete("/{uid}", status_code=204)
    async def delete_user(uid: int) -> None:
        return None

    users.include_router(orders)

    async def starlette_endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"starlette": request.path_params})

    # Starlette routes and mounts of a router get the prefixes of the routers around it,
    # not the router's own (FastAPI applies that one in add_api_route).
    users.add_route("/{uid}/plain", starlette_endpoint)

    secured = APIRouter(prefix="/secured", dependencies=[Depends(require_token)])

    @secured.get("/{item}")
    async def secured_item(item: str) -> dict[str, str]:
        return {"item": item}

    text = APIRouter(prefix="/text", default_response_class=PlainTextResponse)

    @text.get("/{word}")
    async def word(word: str) -> str:
        return word.upper()

    forms = APIRouter(prefix="/forms", form_limits={"max_fields": 1})

    @forms.get("/{name}")  # (python-multipart is not a dependency: no Form fields here)
    async def form_page(name: str) -> dict[str, str]:
        return {"form": name}

    small = APIRouter(prefix="/small", max_body_size=16)

    @small.post("/{name}")
    async def small_body(name: str, request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    # Shadowing: a route of an earlier router takes a path a later one also declares.
    first = APIRouter(prefix="/items")

    @first.get("/{name}")
    async def item_by_name(name: str, request: Request) -> dict[str, Any]:
        return _describe(request)

    second = APIRouter(prefix="/items")

    @second.get("/special")
    async def special_item(request: Request) -> dict[str, Any]:
        return _describe(request)

    custom = APIRouter(prefix="/custom", route_class=TracedRoute)

    @custom.get("/{n}")
    async def custom_route(n: int) -> dict[str, int]:
        return {"n": n}

    sub = FastAPI()

    @sub.get("/ping")
    async def sub_ping() -> dict[str, str]:
        return {"sub": "pong"}

    mounted = APIRouter(prefix="/mounted")
    mounted.routes.append(Mount("/sub", app=sub))

    shop = APIRouter(prefix="/shop/v1")
    shop.include_router(users)
    shop.include_router(secured)
    shop.include_router(text)
    shop.include_router(forms)
    shop.include_router(small)
    shop.include_router(first)
    shop.include_router(second)
    shop.include_router(mounted)
    shop.include_router(custom)
    return [shop]


def build(route_index: bool) -> PlatformApp:
    app = create_app(Settings(), team_routers(), title="differential", route_index=route_index)

    @app.api.get("/shop/v1/direct")  # on the app itself, not in a router
    async def direct(request: Request) -> dict[str, Any]:
        return _describe(request)

    app.api.dependency_overrides[current_tenant] = lambda: "overridden"
    return app


# (method, path, headers, body, served by the index?)
REQUESTS: list[tuple[str, str, dict[str, str], Any, bool]] = [
    ("GET", "/shop/v1/users/7/orders/9", {}, None, True),
    ("GET", "/shop/v1/users/7/orders/nine", {}, None, False),  # :int convertor: no route
    ("POST", "/shop/v1/users/7/orders/9", {}, {"sku": "a"}, True),
    ("POST", "/shop/v1/users/x/orders/9", {}, {"sku": "a"}, True),  # 422 from the handler
    ("GET", "/shop/v1/users/7/orders/9/raw", {}, None, True),
    ("GET", "/shop/v1/users/me", {}, None, True),  # router dependency with yield, override
    ("GET", "/shop/v1/users/7", {}, None, True),
    ("DELETE", "/shop/v1/users/7", {}, None, True),  # a later route for the same path
    ("PUT", "/shop/v1/users/7", {}, None, False),  # 405, Allow from FastAPI
    ("HEAD", "/shop/v1/users/7", {}, None, False),
    ("GET", "/shop/v1/users/7/", {}, None, False),  # the trailing-slash redirect
    ("GET", "/shop/v1/7/plain", {}, None, False),  # a Starlette route
    ("GET", "/shop/v1/users/direct", {}, None, True),  # /{uid} takes it (422), as in FastAPI
    ("GET", "/shop/v1/direct", {}, None, False),  # a route on the app itself
    ("GET", "/shop/v1/secured/box", {}, None, True),  # 401 from the router's dependency
    ("GET", "/shop/v1/secured/box", {"x-token": "secret"}, None, True),
    ("GET", "/shop/v1/text/hello", {}, None, True),  # the router's default response class
    ("GET", "/shop/v1/forms/contact", {}, None, False),  # a router with form limits
    ("POST", "/shop/v1/small/x", {}, {"raw": b"0123456789"}, True),
    ("POST", "/shop/v1/small/x", {}, {"raw": b"0123456789abcdefghij"}, True),  # 413
    ("GET", "/shop/v1/items/special", {}, None, True),  # the earlier router's route wins
    ("GET", "/shop/v1/items/other", {}, None, True),
    ("GET", "/shop/v1/sub/ping", {}, None, False),  # a mount
    ("GET", "/shop/v1/custom/5", {}, None, True),  # the route class's own handle runs
    ("GET", "/nowhere", {}, None, False),
]


def _send(client: TestClient, method: str, path: str, headers: dict[str, str], body: Any) -> Any:
    kwargs: dict[str, Any] = {"headers": headers, "follow_redirects": False}
    if isinstance(body, dict) and "raw" in body:
        kwargs["content"] = body["raw"]
    elif body is not None:
        kwargs["json"] = body
    return client.request(method, path, **kwargs)


def _comparable(response: Any) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in response.headers.items() if k not in ("x-request-id", "date")}
    body = response.content
    if body and response.headers.get("content-type", "").startswith("application/problem+json"):
        problem = response.json()
        problem.pop("request_id", None)
        body = repr(sorted(problem.items())).encode()
    return response.status_code, headers, body


@pytest.fixture(autouse=True)
def _ready() -> Any:
    lifecycle.state.started = True
    _trace.clear()
    yield
    lifecycle.state.started = False


@pytest.mark.parametrize(("method", "path", "headers", "body", "indexed"), REQUESTS)
def test_the_index_answers_as_fastapi_s_own_routing(
    method: str, path: str, headers: dict[str, str], body: Any, indexed: bool
) -> None:
    with_index, without = build(True), build(False)
    assert with_index.route_index is not None and without.route_index is None
    with TestClient(with_index) as fast, TestClient(without) as reference:
        expected = _comparable(_send(reference, method, path, headers, body))
        reference_trace = list(_trace)
        _trace.clear()
        got = _comparable(_send(fast, method, path, headers, body))
        assert got == expected
        assert _trace == reference_trace  # a router's yield dependency ran the same way
        assert with_index.route_index.dispatched == (1 if indexed else 0)


def test_served_requests_see_fastapi_s_scope() -> None:
    """Spot check of what the comparison above covers: the route, endpoint, parameters (the
    ``:int`` one converted) and ``url_for`` a nested handler sees."""
    app = build(True)
    with TestClient(app) as client:
        got = client.get("/shop/v1/users/7/orders/9").json()
    assert got == {
        "route": "/{uid}/orders/{oid:int}",  # scope["route"]: the APIRoute as declared
        "endpoint": "get_order",
        "params": {"uid": "7", "oid": 9},
        "router_is_app_router": True,
        "url_for": "http://testserver/shop/v1/users/7/orders/9",
    }
    assert app.route_index is not None and app.route_index.dispatched == 1


def test_a_route_added_after_the_first_request_is_served_by_fastapi() -> None:
    app = build(True)
    late = APIRouter(prefix="/late")

    @late.get("/{n}")
    async def late_route(n: int) -> dict[str, int]:
        return {"late": n}

    with TestClient(app) as client:
        assert client.get("/shop/v1/users/7").status_code == 200  # the index is built
        app.api.include_router(late)
        response = client.get("/late/3")
    assert (response.status_code, response.json()) == (200, {"late": 3})
    assert app.route_index is not None and app.route_index.dispatched == 1


def test_a_root_path_goes_through_fastapi() -> None:
    app = build(True)
    with TestClient(app, root_path="/prefix") as client:
        response = client.get("/prefix/shop/v1/users/7")
    assert response.status_code == 200
    assert response.json()["params"] == {"uid": "7"}
    assert app.route_index is not None and app.route_index.dispatched == 0


@pytest.mark.parametrize(
    ("path", "label"),
    [
        # /items/{name} of the earlier router serves it, so it is the label (the static
        # /items/special of the later router never sees a request)
        ("/shop/v1/items/special", "/shop/v1/items/{name}"),
        ("/shop/v1/users/7/orders/9", "/shop/v1/users/{uid}/orders/{oid}"),
        ("/shop/v1/users/me", "/shop/v1/users/me"),
        ("/shop/v1/7/plain", "/shop/v1/{uid}/plain"),  # a Starlette route: the resolver's
        ("/shop/v1/sub/ping", "/shop/v1/sub/ping"),  # in a mounted app: the resolver's
        ("/nowhere", "unmatched"),
    ],
)
def test_the_label_is_the_route_that_serves_the_request(path: str, label: str) -> None:
    app = build(True)
    labels: list[str] = []
    finish = app._metrics.finish

    def record(slot: Any, method: str, route: str, *rest: Any) -> None:
        labels.append(route)
        finish(slot, method, route, *rest)

    app._metrics.finish = record  # type: ignore[method-assign]
    with TestClient(app) as client:
        client.get(path)
    assert labels == [label]
