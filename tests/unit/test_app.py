"""The app in-process (Starlette's TestClient runs the lifespan): HTTP contract details.

The real server is exercised in tests/integration; these pin the behaviour of the
middleware, error handlers and health routes quickly and precisely.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Response
from fastapi.testclient import TestClient

from app import api
from app.platform import lifecycle
from app.platform.app_factory import create_app
from app.platform.settings import Settings

HEX32 = re.compile(r"^[0-9a-f]{32}$")
boom = APIRouter()


@boom.get("/boom")
async def explode() -> dict[str, str]:
    raise RuntimeError("secret database password in message")


@boom.get("/cached")
async def cached() -> Response:
    return Response(b"{}", media_type="application/json", headers={"Cache-Control": "max-age=60"})


def build(**overrides: Any) -> Any:
    settings = Settings(**overrides)
    return create_app(settings, [*api.routers, boom])


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


def test_sample_api(client: TestClient) -> None:
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
def test_validation_errors_are_problems_with_fields(
    client: TestClient, method: str, url: str, kwargs: dict[str, Any]
) -> None:
    body = assert_problem(client.request(method, url, **kwargs), 422)
    assert body["errors"] and all({"loc", "msg", "type"} <= e.keys() for e in body["errors"])


def test_not_found_and_method_not_allowed(client: TestClient) -> None:
    assert_problem(client.get("/nope"), 404)
    assert_problem(client.delete("/api/v1/hello"), 405)


def test_metrics_are_not_on_the_app_port(client: TestClient) -> None:
    assert_problem(client.get("/metrics"), 404)


def test_500_hides_the_exception(client: TestClient) -> None:
    response = client.get("/boom")
    body = assert_problem(response, 500)
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert body["detail"]


def test_request_id_passthrough_and_replacement(client: TestClient) -> None:
    ok = client.get("/api/v1/hello", headers={"X-Request-ID": "abc.DEF-123_x"})
    assert ok.headers["x-request-id"] == "abc.DEF-123_x"
    for bad in ["has space", "x" * 129, "semi;colon", ""]:
        replaced = client.get("/api/v1/hello", headers={"X-Request-ID": bad})
        assert HEX32.match(replaced.headers["x-request-id"]), bad
    first = client.get("/api/v1/hello").headers["x-request-id"]
    assert first != client.get("/api/v1/hello").headers["x-request-id"]


def test_security_headers_on_success_and_error(client: TestClient) -> None:
    for response in (client.get("/api/v1/hello"), client.get("/nope")):
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
        assert c.get("/openapi.json").json()["paths"]["/api/v1/hello"]
        assert c.get("/docs").status_code == 200
        assert c.get("/redoc").status_code == 200


def test_body_over_limit_by_content_length(small_client: TestClient) -> None:
    body = assert_problem(small_client.post("/api/v1/echo", content=b"x" * 101), 413)
    assert "100 bytes" in body["detail"]


def test_chunked_body_over_limit(small_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b'{"message": "' + b"y" * 20

    response = small_client.post(
        "/api/v1/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)


def test_chunked_body_under_limit_is_served(small_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"message": '
        yield b'"small"}'

    response = small_client.post(
        "/api/v1/echo", content=chunks(), headers={"content-type": "application/json"}
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
        slow = [c.get("/api/v1/wait", params={"ms": 300}) for _ in range(6)]
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


def test_lean_stack_unless_a_team_handles_500s_itself() -> None:
    """Without a team's own 500 handler the outer FastAPI layers are left out (the
    middleware answers instead); with one, FastAPI's full stack runs it."""
    from fastapi.responses import PlainTextResponse
    from starlette.middleware.errors import ServerErrorMiddleware

    app = build()
    assert not isinstance(app.api.build_middleware_stack(), ServerErrorMiddleware)

    app = build()
    app.api.add_exception_handler(
        Exception, lambda _r, _e: PlainTextResponse("team handler", status_code=500)
    )
    assert isinstance(app.api.build_middleware_stack(), ServerErrorMiddleware)
    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/boom")
    assert response.status_code == 500 and response.text == "team handler"
    assert response.headers["x-request-id"]  # the platform's headers still apply
