"""Issue 8.1: a rolling update behind a real HAProxy loses no request.

Two instances (2 workers each, ``APP_SHUTDOWN_DELAY_SECONDS=2``) behind Debian HAProxy, which
health-checks ``GET /readyz`` every 200 ms (``fall 1 rise 1``, ``retries 0``: a request sent
to a closing server is not retried for us). wrk drives sustained load through HAProxy; one
instance gets SIGTERM mid-run. The drain window (2 s) is ten times HAProxy's detection time
(one 200 ms check), the same relation a pod's preStop/drain delay must have with endpoint
removal in Kubernetes.
"""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_tool
from tests.resilience.helpers import HAProxy, figure, finish_wrk, poll_until, start_wrk
from tests.support.server import GunicornServer

DRAIN_ENV = {"APP_SHUTDOWN_DELAY_SECONDS": "2", "APP_GRACEFUL_TIMEOUT_SECONDS": "5"}
LOAD_SECONDS = 8
SIGTERM_AFTER = 2.5


def _served_hello(server: GunicornServer) -> int:
    return sum(1 for e in server.access_logs() if e.get("path") == "/team/v1/hello")


@pytest.mark.slow
def test_sigterm_behind_haproxy_loses_no_request() -> None:
    haproxy_bin = require_tool("haproxy", "apt-get install haproxy (scripts/tools/apt-base.sh)")
    wrk_bin = require_tool("wrk", "apt-get install wrk (scripts/tools/apt-base.sh)")
    a = GunicornServer(env=DRAIN_ENV, workers=2)
    b = GunicornServer(env=DRAIN_ENV, workers=2)
    with tempfile.TemporaryDirectory(prefix="haproxy-") as tmp:
        lb = HAProxy(haproxy_bin, {"a": a.port, "b": b.port}, Path(tmp))
        try:
            a.start()
            b.start()
            lb.start()
            # Both backends up and receiving traffic through the balancer.
            with httpx.Client(base_url=lb.url, timeout=5) as client:

                def both_serving() -> bool:
                    for _ in range(4):
                        client.get("/team/v1/hello").raise_for_status()
                    return _served_hello(a) > 0 and _served_hello(b) > 0

                poll_until(both_serving, timeout=20)

            wrk = start_wrk(
                wrk_bin, f"{lb.url}/team/v1/hello", seconds=LOAD_SECONDS, connections=16
            )
            time.sleep(SIGTERM_AFTER)  # paces the scenario: load is flowing to both
            a_before = _served_hello(a)
            sigterm_at = time.monotonic()
            exit_code: list[int] = []
            exit_seconds: list[float] = []

            def terminate_a() -> None:
                exit_code.append(a.stop(signal.SIGTERM, timeout=30))
                exit_seconds.append(round(time.monotonic() - sigterm_at, 2))

            stopper = threading.Thread(target=terminate_a)
            stopper.start()
            result = finish_wrk(wrk)
            stopper.join(40)
            a_after = _served_hello(a) - a_before
            b_total = _served_hello(b)
        finally:
            lb.stop()
            a.stop()
            b.stop()
            haproxy_log = lb.output()
            a_output = a.output()[-3000:]
            a.close()
            b.close()

    figure(
        "rolling-drain",
        requests=result.requests,
        rps=result.requests_per_sec,
        p99_ms=result.p99_ms,
        non_2xx=result.non_2xx_3xx,
        socket_errors=result.socket_errors,
        a_served_after_sigterm=a_after,
        b_served=b_total,
        a_exit_code=exit_code[0] if exit_code else None,
        a_exit_seconds=exit_seconds[0] if exit_seconds else None,
    )
    assert exit_code == [0], f"instance A exit code {exit_code}\n{a_output}"
    assert result.non_2xx_3xx == 0, result.output + haproxy_log[-3000:]
    assert result.socket_errors == 0, result.output + haproxy_log[-3000:]
    assert result.requests > 100, result.output
    # HAProxy saw the instance leave: its health check flipped it DOWN after SIGTERM.
    assert "a is DOWN" in haproxy_log, haproxy_log[-3000:]
