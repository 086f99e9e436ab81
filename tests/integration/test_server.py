"""The real gunicorn master with two UvicornWorkers on loopback: metrics, logs, headers."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import httpx
import pytest

from app.platform.metrics import LATENCY_BUCKETS
from tests.support.metrics import promtool_check
from tests.support.server import GunicornServer, metric_value, wait_for

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def fresh_get(url: str, **kw: object) -> httpx.Response:
    """One request on its own connection, so the kernel spreads them over the workers."""
    with httpx.Client(headers={"Connection": "close"}) as c:
        return c.get(url, **kw)  # type: ignore[arg-type]


def test_exact_totals_across_workers(server: GunicornServer) -> None:
    before = metric_value(
        server.scrape(), "http_requests_total", {"route": "/team/v1/hello", "status": "200"}
    )
    n = 120
    for i in range(n):
        assert fresh_get(f"{server.base_url}/team/v1/hello", params={"name": f"n{i}"}).is_success
    for _ in range(7):
        assert fresh_get(f"{server.base_url}/no/such/{_}").status_code == 404
    text = server.scrape()
    labels = {"method": "GET", "route": "/team/v1/hello", "status": "200"}
    assert metric_value(text, "http_requests_total", labels) - before == n
    assert metric_value(text, "http_requests_total", {"route": "unmatched", "status": "404"}) == 7
    assert "/no/such" not in text  # raw paths never become labels
    hello = {"route": "/team/v1/hello"}
    count = metric_value(text, "http_request_duration_seconds_count", hello)
    assert count >= n
    # A complete histogram: every bucket, cumulative, +Inf equal to the count.
    bucket_lines = [
        line
        for line in text.splitlines()
        if line.startswith("http_request_duration_seconds_bucket{")
        and 'route="/team/v1/hello"' in line
        and 'method="GET"' in line
    ]
    assert len(bucket_lines) == len(LATENCY_BUCKETS) + 1
    values = [float(line.rsplit(" ", 1)[1]) for line in bucket_lines]
    assert values == sorted(values)
    assert (
        metric_value(text, "http_request_duration_seconds_bucket", {**hello, "le": "+Inf"}) == count
    )
    assert metric_value(text, "http_requests_in_progress") == 0
    assert metric_value(text, "gunicorn_workers") == 2
    assert metric_value(text, "http_requests_concurrency_limit") == 2 * 100  # the default
    # The requests really were spread: more than one worker wrote counter files.
    writers = {p.name for p in Path(server.metrics_dir).glob("kit_http_[0-9]*.vals")}
    assert len(writers) >= 2, writers


def test_exposition_passes_promtool(server: GunicornServer) -> None:
    fresh_get(f"{server.base_url}/team/v1/hello")
    promtool_check(server.scrape())


def test_metrics_port_serves_only_metrics(server: GunicornServer) -> None:
    assert fresh_get(server.metrics_url).status_code == 200
    other = fresh_get(server.metrics_url.replace("/metrics", "/other"))
    assert other.status_code == 404
    app_port = fresh_get(f"{server.base_url}/metrics")
    assert app_port.status_code == 404
    assert app_port.headers["content-type"] == "application/problem+json"


def test_no_server_header_and_security_headers(server: GunicornServer) -> None:
    response = fresh_get(f"{server.base_url}/team/v1/hello")
    assert "server" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


def test_every_line_is_json_with_one_access_line_per_request(server: GunicornServer) -> None:
    rid = "integration-log-check"
    fresh_get(f"{server.base_url}/team/v1/hello", headers={"X-Request-ID": rid})
    fresh_get(f"{server.base_url}/livez")
    fresh_get(f"{server.base_url}/readyz")

    def mine() -> list[dict]:
        return [e for e in server.access_logs() if e.get("request_id") == rid]

    (line,) = wait_for(mine, timeout=5)
    assert line["method"] == "GET" and line["path"] == "/team/v1/hello"
    assert line["route"] == "/team/v1/hello" and line["status"] == 200
    assert line["client_ip"] == "127.0.0.1" and isinstance(line["duration_ms"], float)
    for raw in server.lines():
        event = json.loads(raw)  # every line, gunicorn's own included
        assert {"timestamp", "level", "event", "logger"} <= event.keys(), raw
        assert RFC3339_UTC.match(event["timestamp"]), raw
    access = server.access_logs()
    assert not [e for e in access if e["path"] in ("/livez", "/readyz")]  # probes: no line
    loggers = {e["logger"] for e in server.json_logs()}
    assert "uvicorn.access" not in loggers and "gunicorn.access" not in loggers
    assert any(e["logger"] == "gunicorn.error" for e in server.json_logs())


def test_chunked_body_over_limit_gets_413(server: GunicornServer) -> None:
    """Raw socket, so the body really goes out in chunks with no Content-Length."""
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /team/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        try:
            for _ in range(20):  # 1.25 MiB > the 1 MiB default
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before the whole body is sent
        head = s.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 413"), head[:200]
    assert "application/problem+json" in head


def test_bad_setting_stops_before_binding() -> None:
    srv = GunicornServer({"APP_WORKERS": "zero"})
    try:
        srv.start(wait_ready=False)
        assert srv.proc is not None
        code = srv.proc.wait(30)
        lines = srv.lines()
        assert code != 0
        assert len(lines) == 1, lines
        assert "APP_WORKERS" in lines[0] and "'zero'" in lines[0]
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
    finally:
        srv.close()
