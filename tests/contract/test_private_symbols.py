"""Contract tests: every private symbol of a dependency the kit's hot paths reach into.

The kit reaches past public APIs in a few measured places (README, "Hand-written hot
paths"). Each such dependency is capped in ``pyproject.toml`` below its next untested minor
(``<X.(Y+1)`` for the ``X.Y`` locked in ``uv.lock``) and floored at its tested major; one
test per dependency here names each private symbol (or undocumented behaviour) it relies
on, so that after an upgrade (raise the cap, ``uv lock --upgrade-package NAME``) a failure
says exactly which symbol moved and which module of the kit to re-check. They check that
the symbol exists *and* still means what the kit assumes, where that can be checked cheaply.

``test_every_private_name_the_kit_uses_is_named`` keeps the list complete: it reads ``app/``
and ``gunicorn.conf.py`` and fails on a private attribute of a library object (or a private
name a kit subclass shares with its library base) that no contract here names.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import subprocess
import sys
import tomllib
from importlib import import_module
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.contract.test_dependencies import distribution_of
from tests.support.transport import RecordingTransport

REPO = Path(__file__).resolve().parents[2]

# distribution -> the kit's modules that rely on its private symbols
FENCED = {
    "fastapi": "app/platform/routes.py (iter_route_contexts of nested routers) and "
    "app/platform/dispatch.py (RouteIndex: FastAPI's effective routes, dispatched directly)",
    "starlette": "app/platform/middleware.py, app/platform/app_factory.py, "
    "app/platform/dispatch.py (Router.middleware_stack)",
    "uvicorn": "app/platform/protocol.py, app/platform/worker.py, app/platform/middleware.py",
    "uvicorn-worker": "app/platform/worker.py (UvicornWorker._serve)",
    "gunicorn": "app/platform/worker.py, app/platform/metrics_server.py, server_hooks.py",
    "httptools": "app/platform/protocol.py (HeadTooLarge, raised from a parser callback)",
    "prometheus-client": "app/platform/metrics.py and metrics_server.py (the kit's own files "
    "beside prometheus-client's: MultiProcessCollector globs only *.db)",
    "opentelemetry-api": "app/platform/tracing.py (ServerSpan.end, _valid_local_context)",
    "opentelemetry-sdk": "app/platform/tracing.py (ServerSpan, ServerSpans, _sampling_plan)",
    "opentelemetry-exporter-otlp-proto-http": "app/platform/otlp_exporter.py",
}

# The private names each dependency's test below checks (the completeness test reads these).
OTEL_API_PRIVATE = ("_set_items", "_immutable")
# Every field an SDK Span.__init__ sets: ServerSpan sets or inherits each one itself.
SPAN_FIELDS = frozenset(
    {
        "_attributes",
        "_context",
        "_end_time",
        "_events",
        "_instrumentation_info",
        "_instrumentation_scope",
        "_kind",
        "_limits",
        "_links",
        "_lock",
        "_name",
        "_parent",
        "_record_end_metrics",
        "_record_exception",
        "_resource",
        "_sampler",
        "_set_status_on_exception",
        "_span_processor",
        "_start_time",
        "_status",
        "_trace_config",
    }
)
# What Span.end touches; ServerSpan.end does the same steps (without the ReadableSpan copy).
SPAN_END_USES = frozenset(
    {
        "_attributes",
        "_end_time",
        "_lock",
        "_readable_span",
        "_record_end_metrics",
        "_span_processor",
        "_start_time",
    }
)
OTEL_SDK_PRIVATE = (
    *sorted(SPAN_FIELDS),
    "_on_ending",
    "_span_limits",
    "_root",
    "_remote_parent_sampled",
    "_remote_parent_not_sampled",
)
OTLP_HTTP_PRIVATE = ("_shutdown", "_client", "_max_request_size", "_metrics")
UVICORN_PRIVATE = ("_unset_keepalive_if_required",)
FASTAPI_PRIVATE = ("_IncludedRouter", "_EffectiveRouteContext")
UVICORN_WORKER_PRIVATE = ("_serve", "_install_sigquit_handler")
NAMED: dict[str, tuple[str, ...]] = {
    "fastapi": FASTAPI_PRIVATE,
    "opentelemetry-api": OTEL_API_PRIVATE,
    "opentelemetry-sdk": OTEL_SDK_PRIVATE,
    "opentelemetry-exporter-otlp-proto-http": OTLP_HTTP_PRIVATE,
    "uvicorn": UVICORN_PRIVATE,
    "uvicorn-worker": UVICORN_WORKER_PRIVATE,
}
# Private names the kit reads on objects that are its own (or the standard library's).
KIT_OWN = {
    "_reset": "metrics.HttpMetrics._reset, called by the kit's after-fork hook",
    "_metrics_httpd": "the kit's attribute on gunicorn's Arbiter (test_gunicorn_* checks "
    "gunicorn has none of that name)",
    "_Environ": "os._Environ (standard library)",
}


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = (Requirement(r) for r in project["dependencies"])
    return {r.name: r for r in reqs}


def _locked() -> dict[str, Version]:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    return {p["name"]: Version(p["version"]) for p in lock["package"] if "version" in p}


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


def self_attributes(source: str) -> set[str]:
    return set(re.findall(r"self\.(\w+)", source))


# The caps


@pytest.mark.parametrize("dist", sorted(FENCED))
def test_each_fenced_dependency_is_capped_below_its_next_untested_minor(dist: str) -> None:
    req = _requirements().get(dist)
    assert req is not None, f"{dist} is used but not declared in pyproject.toml"
    locked = _locked().get(dist)
    assert locked is not None, f"{dist} is not in uv.lock: run .tools/bin/uv lock"
    major, minor = locked.release[0], locked.release[1] if len(locked.release) > 1 else 0
    cap = Version(f"{major}.{minor + 1}")
    uppers = [s for s in req.specifier if s.operator in ("<", "<=", "==", "~=")]
    assert [(s.operator, Version(s.version)) for s in uppers] == [("<", cap)], (
        f"{dist}: uv.lock has {locked}, so pyproject.toml must cap it at <{cap} (below the "
        f"next untested minor), not {req.specifier}; raise the cap only together with "
        "`uv lock --upgrade-package` and this contract"
    )
    floors = [Version(s.version) for s in req.specifier if s.operator in (">=", ">")]
    # The tested major (for 0.x, the tested minor: each 0.minor may break).
    same = 1 if major else 2
    assert floors and all(f.release[:same] == locked.release[:same] for f in floors), (
        f"{dist}: the floor in pyproject.toml ({req.specifier}) must be in the tested "
        f"{'major' if major else 'minor'} {'.'.join(map(str, locked.release[:same]))}: an "
        "older one would let an untested version in"
    )
    assert Version(version(dist)) in req.specifier, (
        f"installed {dist} {version(dist)} is outside {req}: make install"
    )


# One contract per dependency


def test_fastapi_route_contexts() -> None:
    """routes.RouteResolver builds its table from iter_route_contexts' effective paths: the
    full template of a route nested in routers, its methods and the route object."""
    from fastapi import APIRouter, FastAPI
    from fastapi.routing import iter_route_contexts

    app = FastAPI()
    inner = APIRouter(prefix="/b")
    inner.add_api_route("/{x}", lambda x: x, methods=["GET"])
    outer = APIRouter(prefix="/a")
    outer.include_router(inner)
    app.include_router(outer)
    paths = [c.path_format for c in iter_route_contexts(app.routes)]
    assert "/a/b/{x}" in paths, _fail("fastapi", f"iter_route_contexts yields {paths}")
    context = next(c for c in iter_route_contexts(app.routes) if c.path_format == "/a/b/{x}")
    need("fastapi", context, "original_route", "methods", "path")


def test_fastapi_included_routers_and_effective_routes() -> None:
    """dispatch.RouteIndex: what it reads of FastAPI 0.165's lazily included routers, and
    the scope entry through which an ``APIRoute`` finds the effective route it serves."""
    import fastapi.routing as routing
    from fastapi import APIRouter, FastAPI
    from fastapi.routing import APIRoute, _EffectiveRouteContext, _IncludedRouter

    from app.platform import dispatch

    inner = APIRouter(prefix="/b", form_limits={"max_fields": 3})
    inner.add_api_route("/{x}", lambda x: x, methods=["GET"])
    outer = APIRouter(prefix="/a")
    outer.include_router(inner)
    app = FastAPI()
    app.include_router(outer)
    included = app.router.routes[-1]
    assert isinstance(included, _IncludedRouter), _fail(
        "fastapi", f"include_router adds a {type(included).__name__}, not an _IncludedRouter"
    )
    need("fastapi", included, "effective_candidates", "include_context")
    need("fastapi", app.router, "form_limits")
    branch = included.effective_candidates()[0]
    assert isinstance(branch, _IncludedRouter), _fail(
        "fastapi", "a nested router is no longer an _IncludedRouter branch of its parent"
    )
    assert branch.include_context.form_limits == {"max_fields": 3}, _fail(
        "fastapi", "include_context.form_limits no longer holds the limits a branch applies"
    )
    leaf = branch.effective_candidates()[0]
    assert isinstance(leaf, _EffectiveRouteContext), _fail(
        "fastapi", f"a nested route is a {type(leaf).__name__}, not an _EffectiveRouteContext"
    )
    need(
        "fastapi",
        leaf,
        "original_route",
        "starlette_route",
        "path_regex",
        "param_convertors",
        "methods",
        "endpoint",
    )
    assert isinstance(leaf.original_route, APIRoute) and leaf.starlette_route is None
    assert leaf.path_regex.match("/a/b/1"), _fail("fastapi", "path_regex is not the full path")
    # APIRoute.handle serves the effective route found under these scope keys.
    assert routing._FASTAPI_SCOPE_KEY == dispatch.FASTAPI_SCOPE_KEY, _fail(
        "fastapi", f"the scope key is now {routing._FASTAPI_SCOPE_KEY!r}"
    )
    assert routing._FASTAPI_EFFECTIVE_ROUTE_CONTEXT_KEY == dispatch.EFFECTIVE_ROUTE_CONTEXT_KEY
    handle = inspect.getsource(APIRoute.handle)
    assert "_get_scope_effective_route_context" in handle and "effective_context.app" in handle, (
        _fail("fastapi", "APIRoute.handle no longer serves the effective route of the scope")
    )
    # The scope FastAPI's levels set on the way to the route, which _dispatch sets itself:
    # path_params, endpoint and route from the leaf's match, router from APIRouter.app.
    scope = {"type": "http", "path": "/a/b/1", "method": "GET", "path_params": {}}
    _, child = leaf.matches(scope)
    assert set(child) == {"endpoint", "path_params"}, _fail(
        "fastapi", f"an effective route's match now sets {sorted(child)}"
    )
    # FastAPI's native telemetry keeps its request state under this key (then the index
    # leaves the routing to FastAPI, which reports the route it selects).
    from fastapi.telemetry import _api as telemetry

    selected = inspect.getsource(telemetry._route_selected)
    assert f'scope.get("{dispatch.FASTAPI_TELEMETRY_KEY}")' in selected, _fail(
        "fastapi",
        "native telemetry no longer keeps its request state in the scope key "
        f"{dispatch.FASTAPI_TELEMETRY_KEY!r}",
    )


def test_starlette_cors_routing_and_middleware_entries() -> None:
    from starlette.middleware import Middleware
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
    # dispatch.install_route_index wraps the ASGI app a Router's __call__ hands over to.
    from starlette.routing import Router

    assert "self.middleware_stack(scope, receive, send)" in inspect.getsource(Router.__call__), (
        _fail("starlette", "Router.__call__ no longer calls self.middleware_stack")
    )
    need("starlette", Router(), "middleware_stack")
    assert compile_path("/a/{b}")[0].match("/a/1"), _fail("starlette", "compile_path changed")
    # app_factory unpacks each entry as (cls, args, kwargs), as FastAPI does
    entry = tuple(Middleware(CORSMiddleware, 1, allow_origins=["x"]))
    assert entry == (CORSMiddleware, (1,), {"allow_origins": ["x"]}), _fail(
        "starlette", f"a Middleware entry unpacks as {entry}"
    )


def test_gunicorn_arbiter_and_worker_attributes() -> None:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

    need("gunicorn", Arbiter, "WORKER_BOOT_ERROR", "WORKERS", "LISTENERS")
    assert isinstance(Arbiter.WORKERS, dict), _fail("gunicorn", "Arbiter.WORKERS is not a dict")
    # server_hooks stores the metrics server on the Arbiter under a name gunicorn must not use
    assert "_metrics_httpd" not in self_attributes(inspect.getsource(Arbiter)), _fail(
        "gunicorn", "Arbiter now has its own _metrics_httpd"
    )
    for attr in ("sockets", "wsgi", "cfg", "pid"):  # read by worker.py and server_hooks.py
        assert attr in self_attributes(inspect.getsource(Worker)), _fail(
            "gunicorn", f"Worker sets no {attr}"
        )


def test_uvicorn_worker_serve_is_the_method_replaced() -> None:
    from uvicorn_worker import UvicornWorker

    need("uvicorn-worker", UvicornWorker, *UVICORN_WORKER_PRIVATE, "CONFIG_KWARGS")
    source = inspect.getsource(UvicornWorker._serve)
    for piece in (
        "self.config.app = self.wsgi",
        "Server(",
        "self._install_sigquit_handler()",
        "serve(sockets=self.sockets)",
        "WORKER_BOOT_ERROR",
    ):
        assert piece in source, _fail(
            "uvicorn-worker", f"UvicornWorker._serve no longer has {piece!r}; worker.py copies it"
        )
    # worker.py sets self.CONFIG_KWARGS before super().__init__ reads it
    assert "config_kwargs.update(self.CONFIG_KWARGS)" in inspect.getsource(
        UvicornWorker.__init__
    ), _fail("uvicorn-worker", "__init__ no longer applies self.CONFIG_KWARGS")
    assert "self._serve()" in inspect.getsource(UvicornWorker.run), _fail(
        "uvicorn-worker", "run no longer awaits _serve"
    )


def test_uvicorn_httptools_protocol_cycle_and_server_internals() -> None:
    """protocol.py subclasses HttpToolsProtocol and RequestResponseCycle (rebinding the
    module's RequestResponseCycle name) and reads the protocol's ``cycle``, ``flow``,
    ``loop``, ``logger``, ``transport`` and ``server_state.total_requests``; middleware.py
    reads the cycle's ``disconnected``; worker.py's ``on_tick`` sweeps
    ``server_state.connections`` every tenth tick (one a second)."""
    from uvicorn.config import Config
    from uvicorn.protocols.http import httptools_impl
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.server import Server, ServerState

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
        "on_response_complete",
        "handle_websocket_upgrade",
        *UVICORN_PRIVATE,
    )
    assert "RequestResponseCycle(" in inspect.getsource(proto.on_headers_complete), _fail(
        "uvicorn", "on_headers_complete no longer builds its cycle from the module's name"
    )
    received = inspect.getsource(proto.data_received)
    for piece in ("except httptools.HttpParserError", "self.send_400_response("):
        assert piece in received, _fail(
            "uvicorn", f"data_received has no {piece!r} (HeadTooLarge becomes the 431 there)"
        )
    upgrade = inspect.getsource(proto.handle_websocket_upgrade)
    assert "self.ws_protocol_class(" in upgrade, _fail(
        "uvicorn", "handle_websocket_upgrade no longer builds self.ws_protocol_class"
    )
    assert "self.server_state.total_requests += 1" in inspect.getsource(
        proto.on_response_complete
    ), _fail("uvicorn", "on_response_complete no longer counts total_requests")

    # protocol.py rebinds the module's name to its subclass once imported (by any earlier
    # test in this process): check uvicorn's own class.
    cycle = httptools_impl.RequestResponseCycle
    while cycle.__module__ != httptools_impl.__name__:
        cycle = cycle.__base__
    need("uvicorn", cycle, "send", "receive", "run_asgi")
    init = self_attributes(inspect.getsource(cycle.__init__))
    for attr in (
        "transport",
        "keep_alive",
        "more_body",
        "response_started",
        "response_complete",
        "disconnected",
        "message_event",
        "on_response",
    ):
        assert attr in init, _fail("uvicorn", f"RequestResponseCycle sets no self.{attr}")
    send = inspect.getsource(cycle.send)
    for piece in ("self.keep_alive", "self.transport.close()", "if self.disconnected"):
        assert piece in send, _fail("uvicorn", f"RequestResponseCycle.send has no {piece!r}")
    need("uvicorn", FlowControl, "resume_reading")
    assert "read_paused" in self_attributes(inspect.getsource(FlowControl.__init__)), _fail(
        "uvicorn", "FlowControl has no read_paused"
    )

    need("uvicorn", Server, "handle_exit", "shutdown", "on_tick", "main_loop")
    source = self_attributes(inspect.getsource(Server))
    for attr in ("servers", "server_state", "should_exit", "started"):
        assert attr in source, _fail("uvicorn", f"Server has no self.{attr}")
    main_loop = inspect.getsource(Server.main_loop)
    for piece in ("asyncio.sleep(0.1)", "self.on_tick(counter)"):
        assert piece in main_loop, _fail(
            "uvicorn", f"Server.main_loop has no {piece!r}: on_tick's once-a-second sweep"
        )

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def one_request() -> None:
        loop = asyncio.get_running_loop()
        state = ServerState()
        config = Config(app=app, lifespan="off", log_config=None)
        protocol = proto(config, state, {}, _loop=loop)
        transport = RecordingTransport()
        protocol.connection_made(transport)
        assert protocol in state.connections, _fail(
            "uvicorn", "connection_made does not add the protocol to server_state.connections"
        )
        assert protocol.loop is loop and protocol.transport is transport, _fail(
            "uvicorn", "the protocol's loop/transport attributes changed"
        )
        assert isinstance(protocol.flow, FlowControl), _fail("uvicorn", "protocol.flow changed")
        assert hasattr(protocol.logger, "warning"), _fail("uvicorn", "protocol.logger changed")
        assert protocol.cycle is None
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        cycle = protocol.cycle
        assert isinstance(cycle, httptools_impl.RequestResponseCycle), _fail(
            "uvicorn", "a request no longer sets protocol.cycle"
        )
        for _ in range(100):  # the app task runs on this loop
            if cycle.response_complete:
                break
            await asyncio.sleep(0)
        assert transport.written.startswith(b"HTTP/1.1 204 "), transport.written
        assert state.total_requests == 1, _fail(
            "uvicorn", "server_state.total_requests does not count responses"
        )
        protocol.connection_lost(None)
        assert protocol not in state.connections
        if protocol.timeout_keep_alive_task is not None:
            protocol.timeout_keep_alive_task.cancel()

    asyncio.run(one_request())


def test_uvicorn_websocket_protocol_internals() -> None:
    """protocol.py's WebSocket protocol subclasses uvicorn's sans-I/O one (the default
    ``ws`` implementation), reading its ``transport``, ``loop``, ``logger``, ``queue`` and
    ``close_sent`` and overriding its flow-control and keep-alive methods."""
    from uvicorn.config import Config
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    need(
        "uvicorn",
        WebSocketsSansIOProtocol,
        "pause_writing",
        "resume_writing",
        "connection_lost",
        "keepalive_timeout",
    )
    init = self_attributes(inspect.getsource(WebSocketsSansIOProtocol))
    for attr in ("transport", "loop", "logger", "queue", "close_sent"):
        assert attr in init, _fail("uvicorn", f"WebSocketsSansIOProtocol has no self.{attr}")
    config = Config(app=lambda *a: None, lifespan="off", log_config=None)
    config.load()
    assert config.ws_protocol_class is WebSocketsSansIOProtocol, _fail(
        "uvicorn", f"the default WebSocket protocol is now {config.ws_protocol_class}"
    )


def test_httptools_turns_a_callback_exception_into_a_parser_error() -> None:
    """protocol.HeadTooLarge is raised from ``on_url``/``on_header``; the parser must stop
    and raise an ``HttpParserError`` (which uvicorn answers through send_400_response,
    where the kit writes its 431)."""
    import httptools

    class TooLarge(Exception):
        pass

    def failing(*args: Any) -> None:
        raise TooLarge

    for callback in ("on_url", "on_header"):
        callbacks = type("Callbacks", (), {callback: staticmethod(failing)})
        parser = httptools.HttpRequestParser(callbacks())
        with pytest.raises(httptools.HttpParserError) as raised:
            parser.feed_data(b"GET /x HTTP/1.1\r\nHost: t\r\nX-A: b\r\n\r\n")
        assert isinstance(raised.value.__context__, TooLarge), _fail(
            "httptools", f"an exception from {callback} surfaced as {raised.value!r}"
        )


def test_prometheus_client_reads_only_its_own_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kit's files (``kit_http_<pid>.vals``/``.keys``) share PROMETHEUS_MULTIPROC_DIR
    with a team's prometheus-client files: ``MultiProcessCollector`` must read only its
    ``*.db`` files, and ``mark_process_dead`` delete only its live-gauge files."""
    from prometheus_client import CollectorRegistry, values
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

    from app.platform.metrics import HttpMetrics

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    value_class = values.MultiProcessValue(lambda: 4242)  # a worker's, pid 4242
    team = value_class("counter", "team_orders", "team_orders_total", ("kind",), ("a",), "h")
    team.inc(3)
    live = value_class("gauge", "team_carts", "team_carts", (), (), "h", "livesum")
    live.set(1)
    kit = HttpMetrics(str(tmp_path))
    kit.finish(kit.start("GET", "/x"), "GET", "/x", 200, 0.01)
    kit_files = sorted(p.name for p in tmp_path.glob("kit_http_*"))
    assert len(kit_files) == 2 and not any(name.endswith(".db") for name in kit_files)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    names = {s.name for family in registry.collect() for s in family.samples}
    assert names == {"team_orders_total", "team_carts"}, _fail(
        "prometheus-client", f"MultiProcessCollector read {names}: not only its *.db files"
    )
    mark_process_dead(4242, str(tmp_path))
    assert sorted(p.name for p in tmp_path.glob("kit_http_*")) == kit_files, _fail(
        "prometheus-client", "mark_process_dead deleted the kit's files"
    )
    assert not list(tmp_path.glob("gauge_livesum_*.db")), _fail(
        "prometheus-client", "mark_process_dead no longer deletes the live-gauge files"
    )


def test_prometheus_client_picks_multiprocess_mode_at_import() -> None:
    """gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before anything imports
    prometheus-client, which chooses its value class once, at import."""
    code = (
        "import os, tempfile; os.environ['PROMETHEUS_MULTIPROC_DIR'] = tempfile.mkdtemp()\n"
        "from prometheus_client import values; print(values.ValueClass._multiprocess)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "True", _fail(
        "prometheus-client", "the value class is no longer chosen from the environment"
    )


def test_opentelemetry_api_attributes_and_span_context_layout() -> None:
    """ServerSpan.end feeds the server attributes through ``BoundedAttributes._set_items``
    and freezes them with ``_immutable``; ``tracing._valid_local_context`` builds a
    ``SpanContext`` with ``tuple.__new__`` on its 6-field layout."""
    from opentelemetry.attributes import BoundedAttributes
    from opentelemetry.trace import SpanContext, TraceFlags
    from opentelemetry.trace.span import DEFAULT_TRACE_STATE

    from app.platform.tracing import _valid_local_context

    need("opentelemetry-api", BoundedAttributes, "_set_items")
    items = {"a": "abcdef", "b": 1, "c": 2}
    built = BoundedAttributes(2, items, immutable=False, max_value_len=3)
    attrs = BoundedAttributes(2, immutable=False, max_value_len=3)
    attrs._set_items(items)
    assert (dict(attrs), attrs.dropped) == (dict(built), built.dropped), _fail(
        "opentelemetry-api", "BoundedAttributes._set_items no longer cleans and bounds"
    )
    assert attrs._immutable is False, _fail("opentelemetry-api", "_immutable moved")
    attrs._immutable = True
    try:
        attrs["z"] = 1
    except TypeError:
        pass
    else:
        pytest.fail(_fail("opentelemetry-api", "setting _immutable no longer freezes"))

    flags = TraceFlags(TraceFlags.SAMPLED)
    fast = _valid_local_context(7, 9, flags)
    slow = SpanContext(7, 9, is_remote=False, trace_flags=flags)
    assert type(fast) is SpanContext and fast == slow and len(slow) == 6, _fail(
        "opentelemetry-api", f"SpanContext is no longer the tuple {tuple(fast)}: it is {slow!r}"
    )
    fields = (fast.trace_id, fast.span_id, fast.is_remote, fast.trace_flags)
    assert fields == (7, 9, False, flags), _fail("opentelemetry-api", "SpanContext fields moved")
    assert (fast.trace_state, fast.is_valid) == (DEFAULT_TRACE_STATE, True), _fail(
        "opentelemetry-api", "SpanContext trace_state/is_valid moved"
    )


def test_opentelemetry_sdk_span_and_sampler_internals() -> None:
    """ServerSpan is an SDK Span built without ``__init__`` (it sets the fields itself) whose
    ``end`` repeats Span.end's steps; ServerSpans reads the tracer's constants and the
    sampler's parts."""
    from opentelemetry.sdk import trace as sdk_trace
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_OFF,
        ALWAYS_ON,
        ParentBased,
        TraceIdRatioBased,
    )
    from opentelemetry.trace import SpanKind

    from app.platform.tracing import ServerSpans

    provider = sdk_trace.TracerProvider()
    tracer = provider.get_tracer("contract")
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
    sdk = tracer.start_span("GET /x", kind=SpanKind.SERVER)
    fields = set(vars(sdk))
    assert fields == SPAN_FIELDS, _fail(
        "opentelemetry-sdk",
        f"Span.__init__ now also sets {sorted(fields - SPAN_FIELDS)} and no longer sets "
        f"{sorted(SPAN_FIELDS - fields)}; ServerSpan (tracing.py) sets these fields itself",
    )
    assert sdk._limits is tracer._span_limits, _fail("opentelemetry-sdk", "_span_limits moved")
    assert sdk._instrumentation_scope is tracer._instrumentation_scope
    assert "__getattr__" not in vars(sdk_trace.Span), _fail(
        "opentelemetry-sdk", "Span has a __getattr__ (ServerSpan builds containers in its own)"
    )
    fast = ServerSpans(tracer).start("GET", "/x", None)
    for field in sorted(SPAN_FIELDS):
        assert hasattr(fast, field), _fail("opentelemetry-sdk", f"ServerSpan lacks {field}")
    uses = self_attributes(inspect.getsource(sdk_trace.Span.end))
    uses = {name for name in uses if name.startswith("_")}
    assert uses == SPAN_END_USES, _fail(
        "opentelemetry-sdk", f"Span.end now uses {sorted(uses)}; ServerSpan.end mirrors it"
    )
    need("opentelemetry-sdk", sdk_trace.SpanProcessor, "_on_ending", "on_end")
    need("opentelemetry-sdk", tracer.span_processor, "_on_ending")
    assert "_on_ending(span)" in inspect.getsource(type(tracer.span_processor)._on_ending)
    sdk.end()

    sampler = ParentBased(TraceIdRatioBased(0.5))
    need("opentelemetry-sdk", sampler, "_root", "_remote_parent_sampled")
    assert isinstance(sampler._root, TraceIdRatioBased) and sampler._root.bound == (
        TraceIdRatioBased.get_bound_for_rate(0.5)
    ), _fail("opentelemetry-sdk", "ParentBased._root / TraceIdRatioBased.bound changed")
    assert sampler._remote_parent_sampled is ALWAYS_ON, _fail(
        "opentelemetry-sdk", "ParentBased's default for a sampled remote parent changed"
    )
    assert sampler._remote_parent_not_sampled is ALWAYS_OFF, _fail(
        "opentelemetry-sdk", "ParentBased's default for an unsampled remote parent changed"
    )
    need("opentelemetry-sdk", TraceIdRatioBased, "TRACE_ID_LIMIT", "get_bound_for_rate")
    params = inspect.signature(sdk_trace.Span.__init__).parameters
    for name in ("name", "context", "parent", "sampler", "resource", "span_processor", "kind"):
        assert name in params, _fail("opentelemetry-sdk", f"Span.__init__ takes no {name}")
    provider.shutdown()


def test_otlp_http_exporter_internals() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
    try:
        need("opentelemetry-exporter-otlp-proto-http", exporter, *OTLP_HTTP_PRIVATE)
        need("opentelemetry-exporter-otlp-proto-http", exporter._client, "export")
        assert re.search(r"export_operation", inspect.getsource(type(exporter._metrics))), _fail(
            "opentelemetry-exporter-otlp-proto-http", "_metrics has no export_operation"
        )
    finally:
        exporter.shutdown()


# Completeness


def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _library_bases(cls: type) -> list[type]:
    """The classes in ``cls``'s MRO that a third-party distribution defines."""
    out = []
    for base in cls.__mro__[1:]:
        top = base.__module__.split(".")[0]
        if top != "app" and top not in sys.stdlib_module_names and top != "builtins":
            out.append(base)
    return out


def _knows(base: type, name: str) -> bool:
    if name in vars(base):
        return True
    try:
        return name in self_attributes(inspect.getsource(base))
    except (OSError, TypeError):
        return False


def _kit_classes() -> list[tuple[type, ast.ClassDef, str]]:
    out = []
    for path in sorted((REPO / "app").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        if module.endswith("__init__") or module == "app.main":
            continue
        loaded = import_module(module)
        for node in ast.walk(_parsed(path)):
            if isinstance(node, ast.ClassDef) and isinstance(getattr(loaded, node.name, 0), type):
                out.append((getattr(loaded, node.name), node, str(path.relative_to(REPO))))
    return out


def _class_level_names(node: ast.ClassDef) -> list[tuple[str, int]]:
    """Names a class body defines: methods and fields."""
    out = []
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            out.append((item.name, item.lineno))
        elif isinstance(item, ast.Assign):
            out += [(t.id, item.lineno) for t in item.targets if isinstance(t, ast.Name)]
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            out.append((item.target.id, item.lineno))
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_every_private_name_the_kit_uses_is_named() -> None:
    """Reads app/ and gunicorn.conf.py: a private name imported from a library, a private
    attribute read or set on any object but ``self``/``cls``, and a private name a kit class
    shares with a library base class (a field it sets, a method it overrides or calls), must
    be named by a contract above."""
    named = {name: dist for dist, names in NAMED.items() for name in names}
    missing = []
    files = [*sorted((REPO / "app").rglob("*.py")), REPO / "gunicorn.conf.py"]
    for path in files:
        for node in ast.walk(_parsed(path)):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # from library import _private_name
                    if _private(alias.name) and alias.name not in named:
                        where = f"{path.relative_to(REPO)}:{node.lineno}"
                        missing.append(f"{where}: from {node.module} import {alias.name}")
                continue
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr not in named and node.attr not in KIT_OWN:
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                missing.append(f"{where}: {ast.unparse(node)}")
    for cls, node, path in _kit_classes():
        bases = _library_bases(cls)
        if not bases:
            continue
        used = {name: line for name, line in _class_level_names(node)}
        for sub in ast.walk(node):
            if (
                isinstance(sub, ast.Attribute)
                and isinstance(sub.value, ast.Name)
                and sub.value.id == "self"
            ):
                used.setdefault(sub.attr, sub.lineno)
        for name, line in sorted(used.items()):
            if not _private(name):
                continue
            owners = {distribution_of(b.__module__) for b in bases if _knows(b, name)}
            if owners and named.get(name) not in owners:
                missing.append(
                    f"{path}:{line}: {cls.__name__}.{name} (shared with {sorted(owners)})"
                )
    assert not missing, (
        "private names of dependencies the kit uses but tests/contract does not name (add "
        "each to the dependency's contract test and its NAMED list):\n" + "\n".join(missing)
    )
