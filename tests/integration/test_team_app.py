"""Issue 13: a team's own service (``tests/teamapp``) inside the kit, on the real server.

Everything runs for real: the gunicorn master with two UvicornWorkers serving
``tests.teamapp.main:app``, Debian's ``redis-server`` as the team's lifespan resource, an
upstream HTTP server for the team's outgoing call, and the OTLP receiver decoding the spans
the workers export. Each test asserts what a team would check after forking the kit.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import require_tool
from tests.support.metrics import (
    Ledger,
    check_histogram_exact,
    check_kit_exact,
    drive,
    kill_one_worker,
    promtool_check,
)
from tests.support.otlp import OtlpReceiver
from tests.support.peers import RedisServer, UpstreamServer
from tests.support.server import TEAM_APP as APP
from tests.support.server import GunicornServer, metric_value, wait_for

ORIGIN = "https://shop.example"
EDGE = "team-edge-1"  # TEAM_EDGE_HEADER: the team's outer middleware stamps X-Team-Edge
ORDER = {"kind": "book", "amount": 2.5, "items": ["a", "b"], "note": "gift"}
ORDER_ROUTE = "/team/{v}/users/{{uid}}/orders/{{oid}}"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    require_tool(
        "redis-server", "sudo apt-get install -y redis-server (scripts/tools/team-deps.sh)"
    )
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    server = UpstreamServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver().start()
    yield r
    r.stop()


def team_env(redis_server: RedisServer, upstream: UpstreamServer, **extra: str) -> dict[str, str]:
    return {
        "TEAM_REDIS_URL": redis_server.url,
        "TEAM_UPSTREAM_URL": upstream.url,
        "APP_CORS_ALLOW_ORIGINS": ORIGIN,
        "APP_CORS_ALLOW_HEADERS": "content-type,x-request-id",
        **extra,
    }


@pytest.fixture(scope="module")
def team(
    redis_server: RedisServer, upstream: UpstreamServer, receiver: OtlpReceiver
) -> Iterator[GunicornServer]:
    env = team_env(
        redis_server,
        upstream,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_SERVICE_NAME="team-under-test",
        OTEL_TRACES_SAMPLER="always_on",
        OTEL_BSP_SCHEDULE_DELAY="100",
        APP_MAX_BODY_BYTES="4096",
        TEAM_EDGE_HEADER=EDGE,
    )
    srv = GunicornServer(env, workers=2, app=APP).start(timeout=90)
    yield srv
    srv.stop()
    srv.close()


def fresh(base_url: str) -> httpx.Client:
    """One connection per request, so the kernel spreads requests over both workers."""
    return httpx.Client(base_url=base_url, headers={"Connection": "close"}, timeout=10)


def test_nested_routers_are_labelled_with_full_templates(
    team: GunicornServer, receiver: OtlpReceiver
) -> None:
    """Metrics, access lines and span names carry the full template of a route three routers
    deep, per API version; never the inner routers' own relative paths."""
    before = team.scrape()
    n = 12
    pids = set()
    paths = set()
    for i in range(n):
        uid = 7000 + i  # paths no other test uses: the spans are told apart by url.path
        with fresh(team.base_url) as c:
            path = f"/team/v1/users/{uid}/orders/{i * 7}"
            r = c.post(path, json=ORDER, headers={"X-Request-ID": f"nest-{i}"})
            assert r.status_code == 200, r.text
            pids.add(r.json()["pid"])
            paths.add(path)
            get = f"/team/v2/users/{uid}/orders/{i}"
            assert c.get(get).status_code == 200
            paths.add(get)
    after = team.scrape()
    assert len(pids) == 2, "requests should have reached both workers"
    for version, method, count in (("v1", "POST", n), ("v2", "GET", n)):
        labels = {"route": ORDER_ROUTE.format(v=version), "method": method, "status": "200"}
        assert (
            metric_value(after, "http_requests_total", labels)
            - metric_value(before, "http_requests_total", labels)
            == count
        )
    # the inner router's own relative path is never a label
    assert 'route="/{uid}/orders/{oid}"' not in after
    assert 'route="/users/{uid}/orders/{oid}"' not in after

    def access_lines() -> list:
        # Access lines are written in batches (every 50 ms or 64 requests): poll for them.
        got = [e for e in team.access_logs() if str(e.get("request_id", "")).startswith("nest-")]
        return got if len(got) >= n else []

    access = wait_for(access_lines, timeout=10)
    assert len(access) == n
    assert {e["route"] for e in access} == {ORDER_ROUTE.format(v="v1")}

    def server_spans() -> list:
        got = [s for s in receiver.snapshot() if s.attributes.get("url.path") in paths]
        return got if len(got) == 2 * n else []

    spans = wait_for(server_spans, timeout=15)
    names = sorted({(s.name, s.attributes["http.route"], s.kind) for s in spans})
    assert names == [
        ("GET /team/v2/users/{uid}/orders/{oid}", ORDER_ROUTE.format(v="v2"), 2),  # SERVER
        ("POST /team/v1/users/{uid}/orders/{oid}", ORDER_ROUTE.format(v="v1"), 2),
    ]


def test_team_metrics_and_kit_metrics_side_by_side(team: GunicornServer) -> None:
    before = team.scrape()
    n = 20
    with ThreadPoolExecutor(4) as pool:
        statuses = list(
            pool.map(
                lambda i: (
                    fresh(team.base_url)
                    .post(f"/team/v1/users/{i}/orders/1", json=ORDER)
                    .status_code
                ),
                range(n),
            )
        )
    assert statuses == [200] * n
    after = team.scrape()
    assert (
        metric_value(after, "team_orders_total", {"kind": "book"})
        - metric_value(before, "team_orders_total", {"kind": "book"})
        == n
    )
    assert (
        metric_value(after, "team_order_value_count")
        - metric_value(before, "team_order_value_count")
        == n
    )
    assert metric_value(after, "team_open_carts") == 0
    labels = {"route": ORDER_ROUTE.format(v="v1"), "method": "POST", "status": "200"}
    assert (
        metric_value(after, "http_requests_total", labels)
        - metric_value(before, "http_requests_total", labels)
        == n
    )
    promtool_check(after)


def test_outgoing_call_span_is_a_child_of_the_server_span(
    team: GunicornServer, upstream: UpstreamServer, receiver: OtlpReceiver
) -> None:
    r = httpx.get(f"{team.base_url}/team/v1/upstream", headers={"X-Request-ID": "out-1"})
    assert r.status_code == 200 and r.json()["upstream_status"] == 200

    def spans() -> list:
        got = [
            s for s in receiver.snapshot() if s.resource.get("service.name") == "team-under-test"
        ]
        server = [s for s in got if s.name == "GET /team/v1/upstream"]
        client = [s for s in got if s.kind == 3 and server and s.trace_id == server[-1].trace_id]
        return [server[-1], client[-1]] if server and client else []

    server_span, client_span = wait_for(spans, timeout=15)
    assert client_span.parent_span_id == server_span.span_id
    assert server_span.attributes["http.route"] == "/team/v1/upstream"
    sent = [h for h in upstream.requests if h["path"] == "/hello"]
    assert sent and server_span.trace_id in sent[-1].get("traceparent", "")


def test_cors_headers_on_the_apps_and_the_platforms_own_answers(team: GunicornServer) -> None:
    with fresh(team.base_url) as c:
        pre = c.options(
            "/team/v1/users/1",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in pre.headers["access-control-allow-methods"]
    with fresh(team.base_url) as c:
        ok = c.get("/team/v1/users/1", headers={"Origin": ORIGIN})
        assert ok.headers["access-control-allow-origin"] == ORIGIN
        assert "x-request-id" in ok.headers["access-control-expose-headers"].lower()
    with fresh(team.base_url) as c:  # the platform's 413 (APP_MAX_BODY_BYTES=4096 here)
        big = c.post(
            "/team/v1/users/1/orders/1",
            content=b"x" * 5000,
            headers={"Origin": ORIGIN, "Content-Type": "application/json"},
        )
        assert big.status_code == 413
        assert big.headers["access-control-allow-origin"] == ORIGIN
    with fresh(team.base_url) as c:  # the platform's 500 for a failing handler
        boom = c.get("/team/v1/boom", headers={"Origin": ORIGIN})
        assert boom.status_code == 500
        assert boom.headers["content-type"] == "application/problem+json"
        assert boom.headers["access-control-allow-origin"] == ORIGIN
    with fresh(team.base_url) as c:  # another origin is not granted
        other = c.get("/team/v1/users/1", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_a_teams_outer_middleware_wraps_the_platforms_own_answers(team: GunicornServer) -> None:
    """``create_app(middleware=...)``: the team's pure ASGI layer (tests/teamapp/middleware.py,
    on with TEAM_EDGE_HEADER) runs outside the platform, so its header is on the platform's
    own answers too: probes, 404, 413, 500 (and the 503 of shedding, in the test below)."""
    with fresh(team.base_url) as c:
        answers = {
            200: c.get("/team/v1/users/1"),
            404: c.get("/team/v1/no/such/route"),
            413: c.post(
                "/team/v1/users/1/orders/1",
                content=b"x" * 5000,  # APP_MAX_BODY_BYTES=4096 here
                headers={"Content-Type": "application/json"},
            ),
            500: c.get("/team/v1/boom"),
        }
        probes = [c.get("/livez"), c.get("/readyz")]
    for status, response in answers.items():
        assert response.status_code == status, response.text
        assert response.headers.get("x-team-edge") == EDGE, (status, response.headers)
        assert response.headers["x-request-id"]  # and the platform's own headers
    for probe in probes:
        assert probe.status_code == 200
        assert probe.headers.get("x-team-edge") == EDGE, probe.headers


def raw_exchange(srv: GunicornServer, head: bytes) -> bytes:
    """Send ``head`` on a fresh connection; return everything until the server closes."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def cors_origin(response: bytes) -> str | None:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name == "access-control-allow-origin":
            return value.strip()
    return None


def test_cors_on_the_protocols_own_431(team: GunicornServer) -> None:
    """The 431 for an oversized head never reaches the app: the protocol writes it, with the
    CORS headers of the request's Origin (a browser would otherwise see a network error)."""
    huge = b"x-big: " + b"a" * 40_000 + b"\r\n"
    for origin, granted in ((ORIGIN, ORIGIN), ("https://evil.example", None)):
        head = f"GET /team/v1/users/1 HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\n".encode()
        response = raw_exchange(team, head + huge + b"\r\n")
        assert response.startswith(b"HTTP/1.1 431 "), response[:200]
        assert cors_origin(response) == (granted and granted.lower()), response[:400]


def test_cors_on_the_platforms_503_and_the_protocols_408(
    redis_server: RedisServer, upstream: UpstreamServer
) -> None:
    env = team_env(
        redis_server,
        upstream,
        APP_MAX_CONCURRENT_REQUESTS="1",
        APP_HEADER_TIMEOUT_SECONDS="1",
        TEAM_EDGE_HEADER=EDGE,
    )
    srv = GunicornServer(env, workers=1, app=APP).start(timeout=90)
    try:
        slow = threading.Thread(
            target=lambda: httpx.get(f"{srv.base_url}/team/v1/slow?ms=1500", timeout=10)
        )
        slow.start()
        wait_for(lambda: 'route="/team/v1/slow"} 1.0' in srv.scrape(), timeout=10)
        shed = httpx.get(f"{srv.base_url}/team/v1/users/1", headers={"Origin": ORIGIN})
        slow.join()
        assert shed.status_code == 503
        assert shed.headers["retry-after"] == "1"
        assert shed.headers["access-control-allow-origin"] == ORIGIN
        assert shed.headers["x-team-edge"] == EDGE  # the team's outer middleware saw it too
        # A head that never completes: the protocol's 408 after APP_HEADER_TIMEOUT_SECONDS.
        # (the parser reports a header once the next line starts: "X-More" follows Origin)
        unfinished = f"GET /team/v1/users/1 HTTP/1.1\r\nOrigin: {ORIGIN}\r\nX-More: ".encode()
        partial = raw_exchange(srv, unfinished)
        assert partial.startswith(b"HTTP/1.1 408 "), partial[:200]
        assert cors_origin(partial) == ORIGIN, partial[:400]
    finally:
        srv.stop()
        srv.close()


def test_errors_after_the_response_started_are_logged_and_counted(
    redis_server: RedisServer, upstream: UpstreamServer
) -> None:
    """With APP_ACCESS_LOG=false: a stream that breaks and a background task that raises
    each leave one error line with the traceback and a 500 in the metrics; so does a
    handler that raises before answering (FastAPI's own error layer answers it with the
    kit's problem document, and the platform logs it, once)."""
    env = team_env(redis_server, upstream, APP_ACCESS_LOG="false")
    srv = GunicornServer(env, workers=2, app=APP).start(timeout=90)
    try:
        with fresh(srv.base_url) as c:
            with pytest.raises(httpx.RemoteProtocolError):  # the body was cut short
                c.get("/team/v1/stream?n=5&fail=true", headers={"X-Request-ID": "stream-fail"})
        with fresh(srv.base_url) as c:
            done = c.post("/team/v1/background?fail=true", headers={"X-Request-ID": "bg-fail"})
            assert done.status_code == 200  # the client got its answer before the task ran
        with fresh(srv.base_url) as c:
            failed = c.get("/team/v1/boom", headers={"X-Request-ID": "handler-fail"})
            assert failed.status_code == 500
            assert failed.headers["content-type"] == "application/problem+json"
        ids = ("stream-fail", "bg-fail", "handler-fail")

        def errors() -> list:
            lines = [e for e in srv.json_logs() if e.get("request_id") in ids]
            return lines if len(lines) >= len(ids) else []

        lines = wait_for(errors, timeout=10)
        assert sorted(line["request_id"] for line in lines) == sorted(ids)  # one line each
        for line in lines:
            assert line["level"] == "error" and line["status"] == 500
            assert line["exception"][0]["exc_type"] == "RuntimeError"
        exposition = srv.scrape()
        assert (
            metric_value(
                exposition, "http_requests_total", {"route": "/team/v1/stream", "status": "500"}
            )
            == 1
        )
        assert (
            metric_value(
                exposition, "http_requests_total", {"route": "/team/v1/background", "status": "500"}
            )
            == 1
        )
        assert not [
            e for e in srv.json_logs() if e.get("event") == "request" and e["level"] == "info"
        ]
    finally:
        srv.stop()
        srv.close()


def test_lifespan_resource_readiness_and_release_after_the_drain(
    redis_server: RedisServer, upstream: UpstreamServer
) -> None:
    env = team_env(
        redis_server, upstream, APP_SHUTDOWN_DELAY_SECONDS="0.5", APP_READINESS_CACHE_SECONDS="0"
    )
    srv = GunicornServer(env, workers=1, app=APP).start(timeout=90)
    try:
        first = httpx.get(f"{srv.base_url}/team/v1/visits").json()["visits"]
        assert httpx.get(f"{srv.base_url}/team/v1/visits").json()["visits"] == first + 1
        ready = httpx.get(f"{srv.base_url}/readyz").json()
        assert ready["checks"] == {"redis": "ok"}

        redis_server.stop()  # the dependency goes away: readiness says so, liveness does not
        down = wait_for(lambda: (r := httpx.get(f"{srv.base_url}/readyz")).status_code == 503 and r)
        assert down.json()["checks"]["redis"].startswith("fail")
        assert httpx.get(f"{srv.base_url}/livez").status_code == 200
        redis_server.start()
        wait_for(lambda: httpx.get(f"{srv.base_url}/readyz").status_code == 200)

        result: dict[str, int] = {}
        slow = threading.Thread(
            target=lambda: result.update(
                status=httpx.get(f"{srv.base_url}/team/v1/slow?ms=1500", timeout=10).status_code
            )
        )
        slow.start()
        wait_for(lambda: 'route="/team/v1/slow"} 1.0' in srv.scrape(), timeout=10)
        srv.send_signal(signal.SIGTERM)
        slow.join()
        assert srv.proc is not None and srv.proc.wait(30) == 0
        assert result["status"] == 200
        events = [e.get("event") for e in srv.json_logs()]
        slow_line = next(
            i
            for i, e in enumerate(srv.json_logs())
            if e.get("event") == "request" and e.get("route") == "/team/v1/slow"
        )
        released = events.index("team resources released")
        assert slow_line < released, "resources must outlive the in-flight request"
    finally:
        srv.stop()
        srv.close()


def test_websocket_through_the_platform(team: GunicornServer) -> None:
    ws_url = team.base_url.replace("http://", "ws://")
    with connect(f"{ws_url}/team/v1/ws/lobby", additional_headers={"X-Request-ID": "ws-1"}) as ws:
        assert ws.response.headers["x-request-id"] == "ws-1"
        ws.send("hi")
        assert ws.recv(timeout=5) == "lobby: hi"
        ws.send("there")
        assert ws.recv(timeout=5) == "lobby: there"
    with connect(f"{ws_url}/team/v2/ws/attic") as ws:
        ws.send("close")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000

    def lines() -> list:
        got = [e for e in team.json_logs() if e.get("event") == "websocket"]
        return got if len(got) >= 2 else []

    first, second = wait_for(lines)[-2:]
    assert first["request_id"] == "ws-1" and first["route"] == "/team/v1/ws/{room}"
    assert first["close_code"] == 1000 and first["closed_by"] == "client"
    assert first["messages_in"] == 2 and first["messages_out"] == 2
    assert second["close_code"] == 4000 and second["closed_by"] == "server"
    exposition = team.scrape()
    assert (
        metric_value(
            exposition,
            "websocket_connections_total",
            {"route": "/team/v1/ws/{room}", "code": "1000"},
        )
        >= 1
    )
    assert (
        metric_value(
            exposition,
            "websocket_connections_total",
            {"route": "/team/v2/ws/{room}", "code": "4000"},
        )
        == 1
    )
    assert metric_value(exposition, "websocket_connections_in_progress") == 0


def test_websocket_idle_limit_and_close_1001_on_drain(
    redis_server: RedisServer, upstream: UpstreamServer
) -> None:
    env = team_env(
        redis_server,
        upstream,
        APP_SHUTDOWN_DELAY_SECONDS="1",
        APP_GRACEFUL_TIMEOUT_SECONDS="20",
        APP_WS_IDLE_TIMEOUT_SECONDS="1",
    )
    srv = GunicornServer(env, workers=1, app=APP).start(timeout=90)
    ws_url = srv.base_url.replace("http://", "ws://")
    try:
        with connect(f"{ws_url}/team/v1/ws/idle") as idle:  # a peer that sends nothing
            with pytest.raises(ConnectionClosed) as closed:
                idle.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
            assert closed.value.rcvd.reason == "idle timeout"

        with connect(f"{ws_url}/team/v1/ws/drain") as busy:
            busy.send("ping")
            assert busy.recv(timeout=5) == "drain: ping"
            sigterm = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            draining = False
            echoes_while_draining = 0
            with pytest.raises(ConnectionClosed) as closed:
                while True:  # a chatty client: talks through the drain delay until closed
                    busy.send("still here")
                    assert busy.recv(timeout=5) == "drain: still here"
                    if draining:
                        echoes_while_draining += 1
                    else:  # the listener still serves: /readyz says the drain began
                        readyz = httpx.get(f"{srv.base_url}/readyz", timeout=5)
                        draining = readyz.status_code == 503
                    time.sleep(0.05)  # the client's own pace, not a wait for the server
            closed_after = time.monotonic() - sigterm
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        # The socket kept exchanging messages while /readyz said 503, and was closed when the
        # drain delay (1 s) was over: not at SIGTERM, nor after the graceful timeout (20 s).
        assert echoes_while_draining >= 1
        assert 1.0 <= closed_after < 10, closed_after
        assert srv.proc is not None and srv.proc.wait(15) == 0
        codes = [e["close_code"] for e in srv.json_logs() if e.get("event") == "websocket"]
        assert codes == [1000, 1001]
    finally:
        srv.stop()
        srv.close()


def test_blocking_route_does_not_block_the_event_loop(
    redis_server: RedisServer, upstream: UpstreamServer
) -> None:
    """One worker: while a ``def`` route sleeps 1.5 s in FastAPI's thread pool, /livez and an
    async route are answered before it returns (they would queue behind it on the loop)."""
    srv = GunicornServer(team_env(redis_server, upstream), workers=1, app=APP).start(timeout=90)
    try:
        with ThreadPoolExecutor(1) as pool:
            blocked = pool.submit(
                lambda: httpx.get(f"{srv.base_url}/team/v1/blocking?ms=1500", timeout=10)
            )
            wait_for(lambda: 'route="/team/v1/blocking"} 1.0' in srv.scrape(), timeout=10)
            assert httpx.get(f"{srv.base_url}/livez", timeout=5).status_code == 200
            assert httpx.get(f"{srv.base_url}/team/v1/users/7", timeout=5).status_code == 200
            assert not blocked.done()
            assert blocked.result().json()["slept_ms"] == 1500
    finally:
        srv.stop()
        srv.close()


TEAM_KINDS = ("book", "game", "tool")
TEAM_AMOUNTS = (0.5, 2.0, 7.5, 20.0)  # one per bucket of team_order_value; exact sums


def team_order(base_url: str, i: int) -> tuple[str, float, int]:
    kind, amount = TEAM_KINDS[i % len(TEAM_KINDS)], TEAM_AMOUNTS[i % len(TEAM_AMOUNTS)]
    with fresh(base_url) as c:
        r = c.post(f"/team/v1/users/{i}/orders/{i % 5}", json={"kind": kind, "amount": amount})
    assert r.status_code == 200, r.text
    return kind, amount, r.json()["pid"]


def check_team_exact(srv: GunicornServer, ledger: Ledger) -> str:
    """The team's Counter, Histogram and livesum Gauge and the kit's series of the order
    route, all exactly what the clients did."""
    text = srv.scrape()
    check_kit_exact(text, ledger, "POST", ORDER_ROUTE.format(v="v1"))
    for kind in TEAM_KINDS:
        assert metric_value(text, "team_orders_total", {"kind": kind}) == ledger.kinds[kind]
    check_histogram_exact(text, "team_order_value", ledger)
    assert metric_value(text, "team_open_carts") == 0  # up and down within each request
    return text


def test_start_up_waits_for_the_resource_and_metrics_stay_exact_across_a_worker_kill(
    upstream: UpstreamServer,
) -> None:
    """Two workers of the team's app whose Redis is not up yet (TEAM_REDIS_WAIT_SECONDS):
    while their lifespans wait, /readyz cannot answer 200; once Redis is up each worker opens
    its resources, then the platform marks it started and /readyz passes. Then the team's
    and the kit's metrics stay exact (and promtool-clean) across a SIGKILLed worker."""
    redis = RedisServer()  # started later: the pod came up before its database
    env = team_env(redis, upstream, TEAM_REDIS_WAIT_SECONDS="60")
    srv = GunicornServer(env, workers=2, app=APP).start(wait_ready=False)
    try:

        def both_waiting() -> bool:
            waiting = {e["pid"] for e in srv.json_logs() if e.get("event") == "waiting for redis"}
            return len(waiting) == 2

        wait_for(both_waiting, timeout=60)
        # No worker serves before its lifespan ran: the probe gets no answer at all.
        with pytest.raises(httpx.TimeoutException):
            httpx.get(f"{srv.base_url}/readyz", timeout=1)
        events = [e.get("event") for e in srv.json_logs()]
        assert "team resources opened" not in events and "application started" not in events
        redis.start()
        srv.wait_ready(timeout=60)
        assert httpx.get(f"{srv.base_url}/readyz").json()["checks"] == {"redis": "ok"}
        events = [e.get("event") for e in srv.json_logs()]
        opened = [i for i, e in enumerate(events) if e == "team resources opened"]
        started = [i for i, e in enumerate(events) if e == "application started"]
        assert len(opened) == len(started) == 2
        assert all(o < s for o, s in zip(opened, started, strict=True)), events

        ledger = Ledger()
        workers = set(srv.worker_pids())
        assert len(workers) == 2
        drive(srv, ledger, 60, team_order, need_pids=workers)
        assert set(ledger.pids) == workers
        promtool_check(check_team_exact(srv, ledger))

        victim = min(workers, key=lambda p: ledger.pids[p])
        live = kill_one_worker(srv, victim)
        check_team_exact(srv, ledger)  # nothing lost with the dead worker
        drive(srv, ledger, 30, team_order, need_pids=live - workers)
        promtool_check(check_team_exact(srv, ledger))
        assert metric_value(srv.scrape(), "gunicorn_worker_restarts_total") == 1
        assert ledger.all_scrapes_ok(), ledger.scrape_statuses
    finally:
        srv.stop()
        srv.close()
        redis.close()
