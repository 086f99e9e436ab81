"""The comparison apps of ``make bench``; the hardened one is ``app.main:app`` itself.

``bare``: a plain FastAPI app serving the same route the way the sample API does (an
``APIRouter`` with the ``/api/v1`` prefix, included into the app), same response model — the
platform's cost is then the only difference. ``bare_flat``: the route decorated on the app
itself, for reference (FastAPI 0.165 routes through included routers measurably slower).
``raw``: a bare ASGI callable returning the same bytes — the ceiling of gunicorn +
UvicornWorker on this machine.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query
from pydantic import BaseModel


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
