"""Assemble a hardened FastAPI app around a team's routers.

``create_app`` is the one place the platform meets the API: pass routers in, get an ASGI
app out (the FastAPI app wrapped in ``PlatformMiddleware``). ``app.main`` calls it with
the sample API's routers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp

from app.platform import lifecycle, tracing
from app.platform.errors import install_error_handlers, unhandled
from app.platform.health import Probes, ReadinessRegistry
from app.platform.logging import access_log, configure_logging, get_logger
from app.platform.metrics import http_metrics
from app.platform.middleware import PlatformMiddleware
from app.platform.openapi import document_problem_responses
from app.platform.settings import Settings


class PlatformFastAPI(FastAPI):
    """FastAPI without the outer layers ``PlatformMiddleware`` already stands in for.

    FastAPI wraps every app in ``ServerErrorMiddleware`` (turns an unhandled exception into
    a 500 through the app's 500/``Exception`` handler), ``ExceptionTelemetryMiddleware``
    (FastAPI's native telemetry, off here) and ``AppBodyLimitMiddleware`` (FastAPI's own
    ``max_body_size``, unset here). ``PlatformMiddleware`` already answers an unhandled
    exception with the same problem document ``errors.unhandled`` renders, and enforces
    ``APP_MAX_BODY_BYTES``; the three layers cost about 3 us per request under load
    (README, "Performance"). They are kept whenever they would do something: a team's
    own 500/``Exception`` handler, ``debug=True`` or a FastAPI ``max_body_size``.
    """

    def build_middleware_stack(self) -> ASGIApp:
        # The same split FastAPI's own build_middleware_stack makes.
        handlers = {}
        for key, handler in self.exception_handlers.items():
            if key not in (500, Exception):
                handlers[key] = handler
            elif handler is not unhandled:
                return super().build_middleware_stack()  # a team's own 500 handler
        if self.debug or self.max_body_size is not None:
            return super().build_middleware_stack()
        app: ASGIApp = ExceptionMiddleware(
            AsyncExitStackMiddleware(self.router), handlers=handlers, debug=False
        )
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app


class PlatformApp(PlatformMiddleware):
    """The served ASGI app; ``.api`` is the inner FastAPI app (OpenAPI, routes, tests)."""

    api: FastAPI
    readiness: ReadinessRegistry


def create_app(
    settings: Settings,
    routers: Sequence[APIRouter],
    *,
    title: str = "FastAPI service",
    version: str = "0.1.0",
    readiness: ReadinessRegistry | None = None,
) -> PlatformApp:
    configure_logging(settings.log_level, settings.log_format)
    registry = readiness or ReadinessRegistry(
        timeout=settings.readiness_timeout_seconds, cache_seconds=settings.readiness_cache_seconds
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Under gunicorn the post_fork hook already set tracing up; this call is then a
        # no-op, and it covers the app served by plain uvicorn or a test client.
        app.spans = tracing.configure_tracing()
        lifecycle.state.started = True
        get_logger("app.lifecycle").info("application started")
        try:
            yield
        finally:
            lifecycle.state.started = False
            app.spans = None
            access_log().flush()
            tracing.shutdown_tracing()

    docs = settings.docs_enabled
    api = PlatformFastAPI(
        title=title,
        version=version,
        lifespan=lifespan,
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

    app = PlatformApp(
        api,
        routes=[route for router in routers for route in router.routes],
        probes=Probes(registry),
        metrics=http_metrics(),
        max_body_bytes=settings.max_body_bytes,
        max_concurrent_requests=settings.max_concurrent_requests,
        access_log=settings.access_log,
        logger=access_log(),
    )
    app.api = api
    app.readiness = registry
    return app
