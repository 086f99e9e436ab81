"""Issue 13.1: a team's own prometheus-client metrics beside the kit's, on the real server.

``tests/integration/teamapp_metrics.py`` (module-level Counter, Histogram and a livesum
Gauge, updated in a route) is served by the real gunicorn master with two UvicornWorkers,
in both orders a team might write its module in. Requests are spread over both workers;
every scrape must answer 200, the kit's series and the team's must be exact, the
exposition must pass ``promtool check metrics``, and all of it must still hold after one
worker is SIGKILLed and replaced (the dead worker's counts are kept; the team's live gauge
drops the dead worker's share, as prometheus-client's ``livesum`` defines).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_tool
from tests.support.server import (
    REPO,
    VENV_BIN,
    GunicornServer,
    clean_env,
    free_port,
    metric_value,
    wait_for,
)

APP = "tests.integration.teamapp_metrics:app"
ROUTE = "/team/orders/{kind}"
AMOUNTS = (0.25, 0.75, 2.0, 5.0)  # exact in binary: sums compare with ==
KINDS = ("a", "b", "c")


@dataclass
class Ledger:
    """What the clients know they did: per kind, per worker pid, the amounts' sum."""

    kinds: Counter[str] = field(default_factory=Counter)
    pids: Counter[int] = field(default_factory=Counter)
    amount_sum: float = 0.0
    total: int = 0
    scrape_statuses: Counter[int] = field(default_factory=Counter)


def _order(base_url: str, i: int) -> tuple[str, float, int]:
    kind, amount = KINDS[i % len(KINDS)], AMOUNTS[i % len(AMOUNTS)]
    # One connection per request, so the kernel spreads them over both workers.
    with httpx.Client(headers={"Connection": "close"}, timeout=10) as client:
        response = client.post(f"{base_url}/team/orders/{kind}", params={"amount": amount})
    assert response.status_code == 200, response.text
    return kind, amount, response.json()["pid"]


def drive(srv: GunicornServer, ledger: Ledger, n: int, need_pids: set[int] | None = None) -> None:
    """``n`` orders from 4 concurrent clients, a scrape after every batch of 8; then more
    batches until every pid in ``need_pids`` has served at least 5 (bounded)."""
    i = 0
    with ThreadPoolExecutor(4) as pool:
        while True:
            batch = list(pool.map(lambda k: _order(srv.base_url, k), range(i, i + 8)))
            i += len(batch)
            for kind, amount, pid in batch:
                ledger.kinds[kind] += 1
                ledger.pids[pid] += 1
                ledger.amount_sum += amount
                ledger.total += 1
            ledger.scrape_statuses[httpx.get(srv.metrics_url, timeout=10).status_code] += 1
            spread = all(ledger.pids[p] >= 5 for p in (need_pids or ()))
            if i >= n and spread:
                return
            assert i < 20 * n, f"requests never reached workers {need_pids}: {ledger.pids}"


def check_exact(srv: GunicornServer, ledger: Ledger, live: set[int]) -> str:
    text = srv.scrape()
    kit = {"method": "POST", "route": ROUTE}
    assert metric_value(text, "http_requests_total", {**kit, "status": "200"}) == ledger.total
    assert metric_value(text, "http_request_duration_seconds_count", kit) == ledger.total
    inf = metric_value(text, "http_request_duration_seconds_bucket", {**kit, "le": "+Inf"})
    assert inf == ledger.total
    assert metric_value(text, "http_requests_in_progress", kit) == 0
    for kind in KINDS:
        assert metric_value(text, "team_orders_total", {"kind": kind}) == ledger.kinds[kind]
    assert metric_value(text, "team_order_amount_count") == ledger.total
    assert metric_value(text, "team_order_amount_sum") == ledger.amount_sum
    assert metric_value(text, "team_order_amount_bucket", {"le": "+Inf"}) == ledger.total
    small = sum(1 for i in range(ledger.total) if AMOUNTS[i % len(AMOUNTS)] <= 0.5)
    assert metric_value(text, "team_order_amount_bucket", {"le": "0.5"}) >= small > 0
    # livesum: the live workers' own increments only.
    assert metric_value(text, "team_open_orders") == sum(ledger.pids[p] for p in live)
    return text


def promtool_check(text: str) -> None:
    promtool = require_tool("promtool", "apt-get install prometheus (or: make tools)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(params=["team-first", "kit-first"])
def team_server(request: pytest.FixtureRequest) -> Iterator[GunicornServer]:
    srv = GunicornServer({"TEAMAPP_ORDER": request.param}, workers=2, app=APP)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        srv.close()


def test_team_metrics_and_kit_metrics_stay_exact(team_server: GunicornServer) -> None:
    srv = team_server
    ledger = Ledger()
    workers = set(srv.worker_pids())
    assert len(workers) == 2
    drive(srv, ledger, 120, need_pids=workers)
    assert set(ledger.pids) == workers
    promtool_check(check_exact(srv, ledger, live=workers))

    # SIGKILL one worker: it is replaced, and the counts keep going from where they were.
    victim = min(workers, key=lambda p: ledger.pids[p])
    os.kill(victim, signal.SIGKILL)

    def replaced() -> set[int] | None:
        pids = set(srv.worker_pids())
        started = [e for e in srv.json_logs() if e.get("event") == "application started"]
        return pids if len(pids) == 2 and victim not in pids and len(started) >= 3 else None

    live = wait_for(replaced, timeout=30)
    replacement = (live - workers).pop()
    check_exact(srv, ledger, live=live)  # nothing lost with the dead worker
    drive(srv, ledger, 60, need_pids={replacement})
    promtool_check(check_exact(srv, ledger, live=live))
    assert metric_value(srv.scrape(), "gunicorn_worker_restarts_total") == 1
    assert ledger.scrape_statuses == Counter({200: sum(ledger.scrape_statuses.values())}), (
        ledger.scrape_statuses
    )
    print(f"FIGURE team-metrics: requests={ledger.total} per_pid={dict(ledger.pids)}")


def test_a_metrics_directory_it_cannot_use_stops_the_server_before_binding(
    tmp_path: Path,
) -> None:
    """The directory is made (for ``--preload``) when the config loads; a path that cannot
    be one is refused there with one line naming the variable, before any port is bound."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    port = free_port()
    env = {
        **clean_env(),
        "APP_HOST": "127.0.0.1",
        "APP_PORT": str(port),
        "APP_METRICS_PORT": str(free_port()),
        "PROMETHEUS_MULTIPROC_DIR": str(not_a_dir / "metrics"),
    }
    result = subprocess.run(
        [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2, lines
    assert len(lines) == 1 and "PROMETHEUS_MULTIPROC_DIR=" in lines[0], lines
