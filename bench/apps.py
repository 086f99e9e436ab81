"""The comparison apps of ``make bench``; the hardened one is ``app.main:app`` itself.

Two routes: the sample API's ``GET /api/v1/hello``, and ``POST
/shop/v1/users/{uid}/orders`` (``orders_router``): three nested routers with a path
parameter, a pydantic body of a few fields, a 1 ms ``await`` and a pydantic response: the
shape of a real service's route. ``orders_bare`` serves it on plain FastAPI,
``orders_hardened`` through the kit's ``create_app``: the same router either way;
``orders_no_index`` through ``create_app`` with the route index off.

``bare``: a plain FastAPI app serving the same route the way the sample API does (an
``APIRouter`` with the ``/api/v1`` prefix, included into the app), same response model — the
platform's cost is then the only difference. ``bare_flat``: the route decorated on the app
itself, for reference (FastAPI 0.165 routes through included routers measurably slower).
``raw``: a bare ASGI callable returning the same bytes — the ceiling of gunicorn +
UvicornWorker on this machine.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query
from pydantic import BaseModel, Field


class Greeting(BaseModel):
    message: str


_NO_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False}


async def hello(name: Annotated[str, Query(min_length=1, max_length=64)] = "world") -> Greeting:
    return Greeting(message=f"Hello, {name}!")


_router = APIRouter(prefix="/api/v1")
_router.add_api_route("/hello", hello, methods=["GET"], response_model=Greeting)
bare = FastAPI(telemetry=_NO_TELEMETRY)
bare.include_router(_router)

bare_flat = FastAPI(telemetry=_NO_TELEMETRY)
bare_flat.add_api_route("/api/v1/hello", hello, methods=["GET"], response_model=Greeting)


class OrderIn(BaseModel):
    sku: str = Field(min_length=1, max_length=32)
    quantity: int = Field(ge=1, le=100)
    unit_price: float = Field(gt=0)
    note: str | None = Field(default=None, max_length=200)


class OrderOut(BaseModel):
    user: int
    sku: str
    quantity: int
    total: float


async def place_order(uid: int, order: OrderIn) -> OrderOut:
    await asyncio.sleep(0.001)  # the database call a real route makes
    return OrderOut(
        user=uid, sku=order.sku, quantity=order.quantity, total=order.quantity * order.unit_price
    )


def orders_router() -> APIRouter:
    """``/shop/v1`` > ``/users`` > ``/{uid}/orders``: three routers, as real services nest."""
    orders = APIRouter(prefix="/{uid}/orders")
    orders.add_api_route("", place_order, methods=["POST"], response_model=OrderOut)
    users = APIRouter(prefix="/users")
    users.include_router(orders)
    shop = APIRouter(prefix="/shop/v1")
    shop.include_router(users)
    return shop


orders_bare = FastAPI(telemetry=_NO_TELEMETRY)
orders_bare.include_router(orders_router())


def _orders_hardened(route_index: bool = True) -> Any:
    from app.platform.app_factory import create_app
    from app.platform.settings import load_settings_or_exit

    return create_app(
        load_settings_or_exit(), [orders_router()], title="bench-orders", route_index=route_index
    )


def __getattr__(name: str) -> Any:
    # Built on first access: importing this module for the bare apps must not configure
    # the kit's logging and settings. ``orders_no_index``: the hardened app with FastAPI's
    # own routing (``create_app(..., route_index=False)``), the platform layer's own cost.
    if name in ("orders_hardened", "orders_no_index"):
        globals()[name] = app = _orders_hardened(route_index=name == "orders_hardened")
        return app
    raise AttributeError(name)


_BODY = b'{"message":"Hello, bench!"}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_BODY))]


async def raw(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


def hardened_tracing_env(endpoint: str, service: str, ratio: str = "0.1") -> dict[str, str]:
    """The hardened service's tracing in the benchmarks: ``parentbased_traceidratio``
    (0.1 by default, as the issue specifies) exporting to ``endpoint``."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": service,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": ratio,
    }
