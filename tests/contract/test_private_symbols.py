"""Contract tests: every private symbol of a dependency the kit's hot paths reach into.

The kit reaches past public APIs in a few measured places (README, "Hand-written hot
paths"). Each such dependency is capped below its next untested minor in
``pyproject.toml``; these tests name each private symbol it relies on, so that after an
upgrade (``uv lock --upgrade-package NAME`` + raising the cap) a failure says exactly which
symbol moved and which module of the kit to re-check. They check that the symbol exists
*and* still means what the kit assumes, where that can be checked cheaply.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]

# distribution -> the kit's modules that use its private symbols
FENCED = {
    "fastapi": "app/platform/app_factory.py (PlatformFastAPI), app/platform/routes.py",
    "starlette": "app/platform/middleware.py, app/platform/app_factory.py",
    "uvicorn": "app/platform/protocol.py, app/platform/worker.py, app/platform/middleware.py",
    "uvicorn-worker": "app/platform/worker.py (UvicornWorker._serve)",
    "gunicorn": "app/platform/worker.py, app/platform/metrics_server.py, server_hooks.py",
    "prometheus-client": "app/platform/metrics_server.py (MultiProcessCollector globs only *.db)",
    "opentelemetry-sdk": "app/platform/tracing.py (ServerSpan, sampling plan)",
    "opentelemetry-exporter-otlp-proto-http": "app/platform/otlp_exporter.py",
}


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = (Requirement(r) for r in project["dependencies"])
    return {r.name: r for r in reqs}


def _fail(dist: str, what: str) -> str:
    return (
        f"{dist} {version(dist)}: {what}. The kit relies on it in {FENCED[dist]}: re-check that "
        f"code against the new version, then update this contract and the cap in pyproject.toml."
    )


def need(dist: str, owner: Any, *names: str) -> None:
    for name in names:
        assert hasattr(owner, name), _fail(
            dist, f"{getattr(owner, '__name__', owner)}.{name} is gone"
        )


@pytest.mark.parametrize("dist", sorted(FENCED))
def test_each_fenced_dependency_is_capped_and_the_installed_version_fits(dist: str) -> None:
    req = _requirements().get(dist)
    assert req is not None, f"{dist} is used but not declared in pyproject.toml"
    uppers = [s for s in req.specifier if s.operator in ("<", "<=")]
    assert uppers, f"{dist} has private symbols fenced here but no upper bound in pyproject.toml"
    assert Version(version(dist)) in req.specifier, (
        f"installed {dist} {version(dist)} is outside {req}"
    )


def test_fastapi_middleware_stack_layers() -> None:
    """PlatformFastAPI.build_middleware_stack rebuilds FastAPI's inner stack without the
    outer layers; it must see the same attributes and the same innermost layers."""
    from fastapi import FastAPI
    from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
    from starlette.middleware.exceptions import ExceptionMiddleware

    app = FastAPI()
    need(
        "fastapi", app, "exception_handlers", "user_middleware", "router", "debug", "max_body_size"
    )
    source = inspect.getsource(FastAPI.build_middleware_stack)
    for layer in ("ServerErrorMiddleware", "ExceptionMiddleware", "AsyncExitStackMiddleware"):
        assert layer in source, _fail("fastapi", f"build_middleware_stack no longer uses {layer}")
    assert ExceptionMiddleware and AsyncExitStackMiddleware


def test_fastapi_route_contexts_give_full_templates() -> None:
    """routes.RouteResolver builds its table from iter_route_contexts' effective paths."""
    from fastapi import APIRouter, FastAPI
    from fastapi.routing import iter_route_contexts

    inner = APIRouter(prefix="/b")
    inner.add_api_route("/{x}", lambda x: x, methods=["GET"])
    outer = APIRouter(prefix="/a")
    outer.include_router(inner)
    app = FastAPI()
    app.include_router(outer)
    paths = [c.path_format for c in iter_route_contexts(app.routes)]
    assert "/a/b/{x}" in paths, _fail("fastapi", f"iter_route_contexts yields {paths}")
    context = next(c for c in iter_route_contexts(app.routes) if c.path_format == "/a/b/{x}")
    need("fastapi", context, "original_route", "methods", "path")


def test_starlette_cors_and_routing_interfaces() -> None:
    from starlette.middleware.cors import CORSMiddleware
    from starlette.routing import Mount, compile_path

    params = inspect.signature(CORSMiddleware.__init__).parameters
    for name in (
        "allow_origins",
        "allow_methods",
        "allow_headers",
        "expose_headers",
        "allow_credentials",
        "max_age",
    ):
        assert name in params, _fail("starlette", f"CORSMiddleware takes no {name}")
    need("starlette", Mount("/m", routes=[]), "routes", "path")
    assert compile_path("/a/{b}")[0].match("/a/1"), _fail("starlette", "compile_path changed")


def test_gunicorn_arbiter_attributes() -> None:
    from gunicorn.arbiter import Arbiter

    need("gunicorn", Arbiter, "WORKER_BOOT_ERROR", "WORKERS", "LISTENERS")
    assert isinstance(Arbiter.WORKERS, dict), _fail("gunicorn", "Arbiter.WORKERS is not a dict")


def test_uvicorn_worker_serve_is_the_method_replaced() -> None:
    from uvicorn_worker import UvicornWorker

    need("uvicorn-worker", UvicornWorker, "_serve", "_install_sigquit_handler", "CONFIG_KWARGS")
    source = inspect.getsource(UvicornWorker._serve)
    for piece in ("Server(", "serve(sockets=self.sockets)", "WORKER_BOOT_ERROR"):
        assert piece in source, _fail(
            "uvicorn-worker", f"UvicornWorker._serve no longer has {piece!r}; worker.py copies it"
        )


def test_opentelemetry_sdk_span_and_sampler_internals() -> None:
    from opentelemetry.sdk import trace as sdk_trace
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    tracer = sdk_trace.TracerProvider().get_tracer("contract")
    need(
        "opentelemetry-sdk",
        tracer,
        "_span_limits",
        "_instrumentation_scope",
        "span_processor",
        "resource",
        "sampler",
        "id_generator",
        "instrumentation_info",
    )
    sampler = ParentBased(TraceIdRatioBased(0.5))
    need(
        "opentelemetry-sdk",
        sampler,
        "_root",
        "_remote_parent_sampled",
        "_remote_parent_not_sampled",
    )
    # ServerSpan sets the fields Span.__init__ sets (tests/unit/test_tracing.py compares them
    # one by one); here only that the constructor still takes what it is built from.
    params = inspect.signature(sdk_trace.Span.__init__).parameters
    for name in (
        "name",
        "context",
        "parent",
        "sampler",
        "resource",
        "attributes",
        "span_processor",
        "kind",
        "links",
        "instrumentation_scope",
        "limits",
    ):
        assert name in params, _fail("opentelemetry-sdk", f"Span.__init__ takes no {name}")


def test_otlp_http_exporter_internals() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
    try:
        need(
            "opentelemetry-exporter-otlp-proto-http",
            exporter,
            "_shutdown",
            "_client",
            "_max_request_size",
            "_metrics",
        )
        need("opentelemetry-exporter-otlp-proto-http", exporter._client, "export")
        assert re.search(r"export_operation", inspect.getsource(type(exporter._metrics))), _fail(
            "opentelemetry-exporter-otlp-proto-http", "_metrics has no export_operation"
        )
    finally:
        exporter.shutdown()


def test_uvicorn_httptools_protocol_and_cycle_internals() -> None:
    """protocol.py subclasses HttpToolsProtocol and RequestResponseCycle (rebinding the
    module's RequestResponseCycle name); middleware.py reads the cycle's ``disconnected``."""
    from uvicorn.protocols.http import httptools_impl
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.server import Server

    proto = httptools_impl.HttpToolsProtocol
    need(
        "uvicorn",
        proto,
        "connection_made",
        "data_received",
        "on_url",
        "on_header",
        "on_headers_complete",
        "on_message_complete",
        "pause_writing",
        "resume_writing",
        "send_400_response",
        "_unset_keepalive_if_required",
        "on_response_complete",
    )
    assert "RequestResponseCycle(" in inspect.getsource(proto.on_headers_complete), _fail(
        "uvicorn", "on_headers_complete no longer builds its cycle from the module's name"
    )
    # protocol.py rebinds the module's name to its subclass once imported (by any earlier
    # test in this process): check uvicorn's own class.
    cycle = httptools_impl.RequestResponseCycle
    while cycle.__module__ != httptools_impl.__name__:
        cycle = cycle.__base__
    need("uvicorn", cycle, "send", "receive", "run_asgi")
    init = inspect.getsource(cycle.__init__)
    for attr in (
        "self.transport",
        "self.keep_alive",
        "self.more_body",
        "self.response_started",
        "self.response_complete",
        "self.disconnected",
        "self.message_event",
        "self.on_response",
    ):
        assert attr in init, _fail("uvicorn", f"RequestResponseCycle sets no {attr}")
    send = inspect.getsource(cycle.send)
    for piece in ("self.keep_alive", "self.transport.close()", "if self.disconnected"):
        assert piece in send, _fail("uvicorn", f"RequestResponseCycle.send has no {piece!r}")
    need("uvicorn", FlowControl, "resume_reading")
    assert "self.read_paused" in inspect.getsource(FlowControl.__init__), _fail(
        "uvicorn", "FlowControl has no read_paused"
    )
    need("uvicorn", Server, "handle_exit", "shutdown", "on_tick")
    source = inspect.getsource(Server)
    for attr in ("self.servers", "self.server_state", "self.should_exit", "self.started"):
        assert attr in source, _fail("uvicorn", f"Server has no {attr}")
