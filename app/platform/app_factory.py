"""Assemble a hardened FastAPI app around a team's routers.

``create_app`` is the one place the platform meets the API: pass routers in, get an ASGI
app out (the FastAPI app wrapped in ``PlatformMiddleware``). ``app.main`` calls it with
the sample API's routers. The extension points a team uses (README, "Extending the kit"):

- ``routers``: nested to any depth; labels are full route templates (``routes.py``);
- ``lifespan``: the team's own resources (a database pool, a client), an async context
  manager factory like FastAPI's. It is entered after the platform's start-up and before
  ``/readyz`` can pass, and left after the drain, when in-flight requests have finished;
  what it yields (a dict) is the lifespan state handlers read from ``request.state``;
- ``readiness_checks``: name -> async callable, run by ``/readyz``;
- ``middleware``: Starlette ``Middleware`` entries placed *outside* the platform layer
  (they see every request, probes included, and the platform's own answers); middleware a
  team adds with ``app.api.add_middleware`` runs inside it, after routing labels and
  admission;
- ``route_index``: routes of nested routers are dispatched in one step (``dispatch.py``);
  ``False`` leaves all routing to FastAPI;
- CORS from ``APP_CORS_*`` (``cors.py``): Starlette's ``CORSMiddleware``, outermost, so
  the platform's own 503/413/500 answers carry the headers the policy grants (and the
  protocol's 431/408 the same ones).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from app.platform import lifecycle, tracing
from app.platform.cors import cors_middleware
from app.platform.dispatch import RouteIndex, install_route_index
from app.platform.errors import install_error_handlers
from app.platform.health import Check, Probes, ReadinessRegistry
from app.platform.logging import access_log, configure_logging, get_logger
from app.platform.metrics import http_metrics
from app.platform.middleware import SERVER_SEND_KEY, PlatformMiddleware
from app.platform.openapi import document_problem_responses
from app.platform.routes import RouteResolver
from app.platform.settings import Settings
from app.platform.websockets import WebSocketSessions

TeamLifespan = Callable[[FastAPI], AbstractAsyncContextManager[Mapping[str, Any] | None]]


class PlatformApp(PlatformMiddleware):
    """The served ASGI app; ``.api`` is the inner FastAPI app (OpenAPI, routes, tests)."""

    api: FastAPI
    readiness: ReadinessRegistry
    platform: PlatformMiddleware
    route_index: RouteIndex | None


class OuterStack(PlatformApp):
    """The served app when middleware runs outside the platform layer (CORS, a team's own).

    A subclass of :class:`PlatformApp` so ``.api``, ``.readiness``, ``.spans`` and the
    in-flight count read the same; each request enters the outermost middleware first.
    """

    entry: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SERVER_SEND_KEY] = send
        await self.entry(scope, receive, send)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The platform layer itself, innermost of the outer stack."""
        await PlatformMiddleware.__call__(self, scope, receive, send)


def create_app(
    settings: Settings,
    routers: Sequence[APIRouter],
    *,
    title: str = "FastAPI service",
    version: str = "0.1.0",
    readiness: ReadinessRegistry | None = None,
    readiness_checks: Mapping[str, Check] | None = None,
    lifespan: TeamLifespan | None = None,
    middleware: Sequence[Middleware] = (),
    route_index: bool = True,
) -> PlatformApp:
    """The served app: the team's ``routers`` inside the platform; see the module docstring."""
    configure_logging(settings.log_level, settings.log_format)
    registry = readiness or ReadinessRegistry(
        timeout=settings.readiness_timeout_seconds, cache_seconds=settings.readiness_cache_seconds
    )
    for name, check in (readiness_checks or {}).items():
        registry.register(name, check)
    log = get_logger("app.lifecycle")

    @asynccontextmanager
    async def platform_lifespan(api: FastAPI) -> AsyncIterator[Mapping[str, Any] | None]:
        # Under gunicorn the post_fork hook already set tracing up; this call is then a
        # no-op, and it covers the app served by plain uvicorn or a test client.
        app.spans = tracing.configure_tracing()
        try:
            if lifespan is None:
                state = None
                lifecycle.state.started = True
                log.info("application started")
                yield state
            else:
                # The team's resources: opened before readiness can pass, closed after the
                # drain (uvicorn runs the lifespan shutdown once in-flight requests ended).
                async with lifespan(api) as state:
                    lifecycle.state.started = True
                    log.info("application started")
                    yield state
                    lifecycle.state.started = False
                log.info("team resources closed")
        finally:
            lifecycle.state.started = False
            app.spans = None
            access_log().flush()
            tracing.shutdown_tracing()

    docs = settings.docs_enabled
    api = FastAPI(
        title=title,
        version=version,
        lifespan=platform_lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        # FastAPI's native OpenTelemetry layer would add a second server span (plus
        # operation spans) per request; PlatformMiddleware owns tracing and metrics.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handlers(api)
    document_problem_responses(api)
    for router in routers:
        api.include_router(router)
    index = install_route_index(api) if route_index else None

    outer = [*cors_middleware(settings), *middleware]
    routes = RouteResolver(lambda: api.routes)  # built on the first request
    metrics = http_metrics()
    app = (OuterStack if outer else PlatformApp)(
        api,
        routes=routes,
        index=index,
        probes=Probes(registry),
        websockets=WebSocketSessions(
            api,
            routes=routes,
            metrics=metrics,
            idle_timeout=settings.ws_idle_timeout_seconds,
            access_log=settings.access_log,
        ),
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        max_concurrent_requests=settings.max_concurrent_requests,
        access_log=settings.access_log,
        logger=access_log(),
    )
    app.api = api
    app.readiness = registry
    app.platform = app
    app.route_index = index
    if isinstance(app, OuterStack):
        entry: ASGIApp = app.serve
        for cls, args, kwargs in reversed(outer):  # the first entry is the outermost
            entry = cls(entry, *args, **kwargs)
        app.entry = entry
    return app
