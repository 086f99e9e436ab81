"""Issue 8.3: overload sheds fast, and liveness keeps answering.

Two workers with ``APP_MAX_CONCURRENT_REQUESTS=4`` (8 slots in all) get 60 concurrent slow
requests (``/team/v1/wait?ms=1500``), each on its own connection. At most 8 can be served;
the others must get a fast 503 with ``Retry-After``, not wait in a queue. Meanwhile
``/livez`` is probed on fresh connections, as the kubelet does, and must answer in under a
second every time: a busy pod must never be restarted by its liveness probe.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx

from tests.resilience.helpers import figure
from tests.support.server import running_server

LIMIT = 4
WORKERS = 2
CONCURRENT = 60
WAIT_MS = 1500


async def _one_slow_request(client: httpx.AsyncClient) -> tuple[int, float, str | None]:
    start = time.monotonic()
    response = await client.get("/team/v1/wait", params={"ms": WAIT_MS})
    return response.status_code, time.monotonic() - start, response.headers.get("retry-after")


async def _probe_livez(base_url: str, stop: asyncio.Event) -> list[tuple[int, float]]:
    samples = []
    # A fresh connection per probe, as the kubelet opens one (keep-alive disabled).
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=5, limits=limits) as client:
        while not stop.is_set():
            start = time.monotonic()
            response = await client.get("/livez")
            samples.append((response.status_code, time.monotonic() - start))
            await asyncio.sleep(0.1)  # paces the probes
    return samples


async def _storm(base_url: str):
    stop = asyncio.Event()
    prober = asyncio.create_task(_probe_livez(base_url, stop))
    await asyncio.sleep(0.2)  # a few probes before the storm
    # One pool, one connection per concurrent request (HTTP/1.1 never multiplexes).
    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=20, limits=limits) as client:
        results = await asyncio.gather(*(_one_slow_request(client) for _ in range(CONCURRENT)))
    stop.set()
    return results, await prober


def test_overload_sheds_fast_and_livez_answers() -> None:
    env = {"APP_MAX_CONCURRENT_REQUESTS": str(LIMIT)}
    with running_server(env=env, workers=WORKERS) as srv:
        results, probes = asyncio.run(_storm(srv.base_url))
        alive = srv.proc is not None and srv.proc.poll() is None
        server_shed_ms = [e["duration_ms"] for e in srv.access_logs() if e.get("status") == 503]

    ok = [r for r in results if r[0] == 200]
    shed = [r for r in results if r[0] == 503]
    shed_latency = sorted(r[1] for r in shed)
    live_latency = sorted(p[1] for p in probes)
    figure(
        "overload",
        concurrent=CONCURRENT,
        capacity=LIMIT * WORKERS,
        ok=len(ok),
        shed=len(shed),
        other=len(results) - len(ok) - len(shed),
        shed_p50_ms=round(statistics.median(shed_latency) * 1000, 1) if shed else None,
        shed_max_ms=round(shed_latency[-1] * 1000, 1) if shed else None,
        server_shed_max_ms=max(server_shed_ms, default=None),
        livez_probes=len(probes),
        livez_p50_ms=round(statistics.median(live_latency) * 1000, 1),
        livez_max_ms=round(live_latency[-1] * 1000, 1),
    )
    assert alive
    assert len(ok) + len(shed) == CONCURRENT, results
    assert 1 <= len(ok) <= LIMIT * WORKERS, results
    assert len(shed) >= CONCURRENT - LIMIT * WORKERS
    assert all(r[2] is not None and r[2].isdigit() for r in shed), "503 without Retry-After"
    # Shed means answered at once, not after waiting for a slot (generous on a busy box).
    assert shed_latency[-1] < WAIT_MS / 1000 * 0.66, shed_latency[-5:]
    assert len(server_shed_ms) == len(shed)  # one access line per shed request
    assert max(server_shed_ms) < 100, "the server itself took long to shed"
    assert all(p[0] == 200 for p in probes), probes
    assert len(probes) >= 5
    assert live_latency[-1] < 1.0, live_latency[-5:]
