"""The app in-process (Starlette's TestClient runs the lifespan): HTTP contract details.

The real server is exercised in tests/integration; these pin the behaviour of the
middleware, error handlers and health routes quickly and precisely. The platform's
behaviour is tested around the team's app (``tests/teamapp``), so replacing the sample API
in ``app/api/`` breaks only the sample API's own tests here (``test_sample_api*``).
"""

from __future__ import annotations

import asyncio
import re
import runpy
import sys
import types
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Request, Response
from fastapi.testclient import TestClient
from starlette.middleware import Middleware

import app as app_package
from app import api as sample_api
from app.platform import lifecycle
from app.platform.app_factory import create_app
from app.platform.settings import Settings
from tests.teamapp import api as team_api
from tests.teamapp.middleware import EdgeHeader

HEX32 = re.compile(r"^[0-9a-f]{32}$")
boom = APIRouter()


@boom.get("/boom")
async def explode() -> dict[str, str]:
    raise RuntimeError("secret database password in message")


@boom.get("/cached")
async def cached() -> Response:
    return Response(b"{}", media_type="application/json", headers={"Cache-Control": "max-age=60"})


def build(**overrides: Any) -> Any:
    """The platform around the team's routers (``/team/v1/*``) and this module's two."""
    settings = Settings(**overrides)
    return create_app(settings, [*team_api.routers(), boom])


@pytest.fixture(autouse=True)
def _reset_lifecycle() -> Iterator[None]:
    lifecycle.state.started = lifecycle.state.draining = False
    yield
    lifecycle.state.started = lifecycle.state.draining = False


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(build(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def small_client() -> Iterator[TestClient]:
    """APP_MAX_BODY_BYTES=100."""
    with TestClient(build(max_body_bytes=100), raise_server_exceptions=False) as c:
        yield c


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert {"type", "title", "status", "detail", "request_id"} <= body.keys()
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@pytest.fixture
def sample_client() -> Iterator[TestClient]:
    """The sample API of ``app/api/`` (the SPEC's stand-in routes), for its own tests."""
    app = create_app(Settings(), sample_api.routers)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_sample_api(sample_client: TestClient) -> None:
    client = sample_client
    assert client.get("/api/v1/hello").json() == {"message": "Hello, world!"}
    assert client.get("/api/v1/hello", params={"name": "Ada"}).json() == {"message": "Hello, Ada!"}
    echo = client.post("/api/v1/echo", json={"message": "héllo"})
    assert echo.json() == {"message": "héllo", "length": 5}
    assert client.get("/api/v1/wait", params={"ms": 5}).json() == {"waited_ms": 5}


@pytest.mark.parametrize(
    ("method", "url", "kwargs"),
    [
        ("GET", "/api/v1/hello", {"params": {"name": "x" * 65}}),
        ("GET", "/api/v1/hello", {"params": {"name": ""}}),
        ("POST", "/api/v1/echo", {"json": {"message": ""}}),
        ("POST", "/api/v1/echo", {"json": {"message": "x" * 1001}}),
        ("POST", "/api/v1/echo", {"json": {"wrong": "field"}}),
        ("GET", "/api/v1/wait", {"params": {"ms": 5001}}),
        ("GET", "/api/v1/wait", {"params": {"ms": -1}}),
    ],
)
def test_sample_api_limits_are_problems_with_fields(
    sample_client: TestClient, method: str, url: str, kwargs: dict[str, Any]
) -> None:
    """The SPEC's limits of the sample API's parameters."""
    body = assert_problem(sample_client.request(method, url, **kwargs), 422)
    assert body["errors"] and all({"loc", "msg", "type"} <= e.keys() for e in body["errors"])


def test_validation_errors_are_problems_with_fields(client: TestClient) -> None:
    response = client.post("/team/v1/users/1/orders/2", json={"kind": "", "amount": 0})
    body = assert_problem(response, 422)
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "kind"), ("body", "amount")}
    assert all({"loc", "msg", "type"} <= e.keys() for e in body["errors"])
    assert_problem(client.get("/team/v1/users/not-a-number"), 422)


def test_not_found_and_method_not_allowed(client: TestClient) -> None:
    assert_problem(client.get("/nope"), 404)
    assert_problem(client.delete("/team/v1/hello"), 405)


def test_metrics_are_not_on_the_app_port(client: TestClient) -> None:
    assert_problem(client.get("/metrics"), 404)


def test_500_hides_the_exception(client: TestClient) -> None:
    response = client.get("/boom")
    body = assert_problem(response, 500)
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert body["detail"]


def test_request_id_passthrough_and_replacement(client: TestClient) -> None:
    ok = client.get("/team/v1/hello", headers={"X-Request-ID": "abc.DEF-123_x"})
    assert ok.headers["x-request-id"] == "abc.DEF-123_x"
    for bad in ["has space", "x" * 129, "semi;colon", ""]:
        replaced = client.get("/team/v1/hello", headers={"X-Request-ID": bad})
        assert HEX32.match(replaced.headers["x-request-id"]), bad
    first = client.get("/team/v1/hello").headers["x-request-id"]
    assert first != client.get("/team/v1/hello").headers["x-request-id"]


def test_security_headers_on_success_and_error(client: TestClient) -> None:
    for response in (client.get("/team/v1/hello"), client.get("/nope")):
        h = response.headers
        assert h["x-content-type-options"] == "nosniff"
        assert h["x-frame-options"] == "DENY"
        assert h["cache-control"] == "no-store"
        assert "default-src 'none'" in h["content-security-policy"]


def test_a_route_s_own_cache_control_is_kept(client: TestClient) -> None:
    response = client.get("/cached")
    assert response.headers.get_list("cache-control") == ["max-age=60"]
    assert response.headers["x-frame-options"] == "DENY"  # the other headers still added


def test_docs_off_by_default(client: TestClient) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert_problem(client.get(path), 404)


def test_docs_on_when_enabled() -> None:
    with TestClient(build(docs_enabled=True)) as c:
        assert c.get("/openapi.json").json()["paths"]["/team/v1/users/{uid}/orders/{oid}"]
        assert c.get("/docs").status_code == 200
        assert c.get("/redoc").status_code == 200


def test_body_over_limit_by_content_length(small_client: TestClient) -> None:
    body = assert_problem(small_client.post("/team/v1/echo", content=b"x" * 101), 413)
    assert "100 bytes" in body["detail"]


def test_chunked_body_over_limit(small_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b'{"message": "' + b"y" * 20

    response = small_client.post(
        "/team/v1/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)


def test_chunked_body_under_limit_is_served(small_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"message": '
        yield b'"small"}'

    response = small_client.post(
        "/team/v1/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.json() == {"message": "small", "length": 5}


def test_readyz_lifecycle() -> None:
    app = build()
    client = TestClient(app)
    body = assert_problem(client.get("/readyz"), 503)  # lifespan not run: starting
    assert body["checks"] == {"startup": "pending"}
    with TestClient(app) as running:
        assert running.get("/readyz").json() == {"status": "ok", "checks": {}}
        lifecycle.state.draining = True
        body = assert_problem(running.get("/readyz"), 503)
        assert body["checks"] == {"shutdown": "draining"}
        assert running.get("/livez").json() == {"status": "ok"}


def test_probes_are_served_before_the_api_s_routing() -> None:
    """A team's catch-all route cannot shadow the probes, and the API's route table holds
    only the API's routes (FastAPI tries them in order for every request)."""
    catch_all = APIRouter()

    @catch_all.api_route("/{anything:path}", methods=["GET", "POST", "HEAD"])
    async def everything(anything: str) -> dict[str, str]:
        return {"caught": anything}

    app = create_app(Settings(), [catch_all])
    with TestClient(app) as c:
        assert c.get("/livez").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ok", "checks": {}}
        assert c.get("/livez/").json() == {"caught": "livez/"}  # only the exact paths
        head = c.head("/readyz")
        assert (head.status_code, head.content) == (200, b"")
        refused = c.post("/livez")
        assert_problem(refused, 405)
        assert refused.headers["allow"] == "GET, HEAD"
        assert refused.headers["x-request-id"]  # the platform's headers, as on any response
    with TestClient(app.api) as inner:  # the FastAPI app alone: no probe routes in it
        assert inner.get("/livez").json() == {"caught": "livez"}


def test_readiness_checks_fail_time_out_and_are_cached() -> None:
    calls = {"db": 0}

    async def db() -> None:
        calls["db"] += 1

    async def broken() -> None:
        raise ConnectionError("refused")

    async def slow() -> None:
        await asyncio.sleep(5)

    app = build(readiness_timeout_seconds=0.05, readiness_cache_seconds=30)
    app.readiness.register("db", db)
    with TestClient(app) as c:
        for _ in range(20):
            assert c.get("/readyz").status_code == 200
        assert calls["db"] == 1  # cached: a probe storm runs the check once
        app.readiness.register("cache", broken)
        app.readiness.register("search", slow)
        body = assert_problem(c.get("/readyz"), 503)
        assert body["checks"]["db"] == "ok"
        assert body["checks"]["cache"] == "fail: ConnectionError"
        assert body["checks"]["search"].startswith("fail: timed out")


@pytest.mark.anyio
async def test_load_shedding_answers_fast_503_and_spares_probes() -> None:
    app = build(max_concurrent_requests=2)
    lifecycle.state.started = True
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        slow = [c.get("/team/v1/wait", params={"ms": 300}) for _ in range(6)]
        tasks = [asyncio.ensure_future(r) for r in slow]
        while app.in_flight < 2:  # noqa: ASYNC110  (poll until the limit is reached)
            await asyncio.sleep(0.001)
        probe = await c.get("/livez")
        responses = await asyncio.gather(*tasks)
    assert probe.status_code == 200
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 503, 503, 503, 503]
    for r in responses:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1"
            assert r.headers["content-type"] == "application/problem+json"


def test_a_team_s_own_500_handler_answers_inside_the_platform() -> None:
    """A team's own 500/``Exception`` handler renders the 500 (FastAPI's own error layer runs
    it); the platform still adds its headers and logs the failure once."""
    from fastapi.responses import PlainTextResponse

    app = build()
    app.api.add_exception_handler(
        Exception, lambda _r, _e: PlainTextResponse("team handler", status_code=500)
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/boom")
    assert response.status_code == 500 and response.text == "team handler"
    assert response.headers["x-request-id"]  # the platform's headers still apply


def test_main_hands_the_api_package_s_exports_to_create_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A team replaces ``app/api/`` only: ``app.main`` must pass on its ``routers``,
    ``readiness_checks``, ``lifespan`` and ``middleware`` (the last outside the platform,
    so it also wraps the platform's own answers)."""
    router = APIRouter(prefix="/shop")
    opened: list[str] = []

    @router.get("/pool")
    async def pool(request: Request) -> dict[str, str]:
        return {"pool": request.state.pool}

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[dict[str, str]]:
        opened.append("pool")
        yield {"pool": "open"}

    async def db() -> None:
        pass

    team = types.ModuleType("app.api")
    team.routers = [router]  # type: ignore[attr-defined]
    team.readiness_checks = {"db": db}  # type: ignore[attr-defined]
    team.lifespan = lifespan  # type: ignore[attr-defined]
    team.middleware = [Middleware(EdgeHeader, value="shop")]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "app.api", team)
    monkeypatch.setattr(app_package, "api", team)
    served = runpy.run_module("app.main")["app"]  # a fresh app.main, this app.api
    with TestClient(served, raise_server_exceptions=False) as c:
        assert opened == ["pool"]
        assert c.get("/shop/pool").json() == {"pool": "open"}
        assert c.get("/readyz").json() == {"status": "ok", "checks": {"db": "ok"}}
        for response in (c.get("/shop/pool"), c.get("/readyz"), c.get("/nope")):
            assert response.headers["x-team-edge"] == "shop", response.request.url
        assert_problem(c.get("/nope"), 404)


def test_main_ignores_submodules_named_like_an_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """``app/api/middleware.py`` or ``app/api/lifespan.py`` imported by the package (the
    attribute is then the module) is not an export: the app starts without one."""
    router = APIRouter(prefix="/shop")

    @router.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    team = types.ModuleType("app.api")
    team.routers = [router]  # type: ignore[attr-defined]
    for name in ("middleware", "lifespan", "readiness_checks"):
        setattr(team, name, types.ModuleType(f"app.api.{name}"))
    monkeypatch.setitem(sys.modules, "app.api", team)
    monkeypatch.setattr(app_package, "api", team)
    served = runpy.run_module("app.main")["app"]
    with TestClient(served) as c:
        assert c.get("/shop/ping").json() == {"ok": True}
        assert c.get("/readyz").json() == {"status": "ok", "checks": {}}


@pytest.mark.anyio
async def test_readyz_is_503_until_the_team_lifespan_has_opened_its_resources() -> None:
    """The platform marks the worker started only once the team's lifespan has yielded:
    while it is still opening its resources, /readyz answers 503 (starting)."""
    entered, release = asyncio.Event(), asyncio.Event()
    resources: dict[str, str] = {}

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[dict[str, str]]:
        entered.set()
        await release.wait()  # e.g. the database is slow to accept the pool
        resources["pool"] = "open"
        yield {}
        resources.clear()

    app = create_app(Settings(), team_api.routers(), lifespan=lifespan)
    messages: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "lifespan.startup.complete":
            started.set()

    await messages.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    running = asyncio.ensure_future(app(scope, messages.get, send))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        await entered.wait()
        body = assert_problem(await c.get("/readyz"), 503)
        assert body["checks"] == {"startup": "pending"} and not resources
        release.set()
        await started.wait()
        assert resources == {"pool": "open"}
        assert (await c.get("/readyz")).json() == {"status": "ok", "checks": {}}
    await messages.put({"type": "lifespan.shutdown"})
    await running
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert not resources
