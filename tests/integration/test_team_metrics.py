"""Issue 13.1: a team's own prometheus-client metrics beside the kit's, on the real server.

``tests/integration/teamapp_metrics.py`` (module-level Counter, Histogram and a livesum
Gauge, updated in a route) is served by the real gunicorn master with two UvicornWorkers,
in both orders a team might write its module in. Requests are spread over both workers;
every scrape must answer 200, the kit's series and the team's must be exact, the
exposition must pass ``promtool check metrics``, and all of it must still hold after one
worker is SIGKILLed and replaced (the dead worker's counts are kept; the team's live gauge
drops the dead worker's share, as prometheus-client's ``livesum`` defines).

The team's full example app (``tests/teamapp``) gets the same run across a worker kill in
``test_team_app.py``; this minimal one is for the two import orders (and ``test_preload.py``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import figure
from tests.support.metrics import (
    Ledger,
    check_histogram_exact,
    check_kit_exact,
    drive,
    kill_one_worker,
    promtool_check,
)
from tests.support.server import (
    REPO,
    VENV_BIN,
    GunicornServer,
    clean_env,
    free_port,
    metric_value,
)

APP = "tests.integration.teamapp_metrics:app"
ROUTE = "/team/orders/{kind}"
AMOUNTS = (0.25, 0.75, 2.0, 5.0)  # exact in binary: sums compare with ==
KINDS = ("a", "b", "c")


def order(base_url: str, i: int) -> tuple[str, float, int]:
    kind, amount = KINDS[i % len(KINDS)], AMOUNTS[i % len(AMOUNTS)]
    # One connection per request, so the kernel spreads them over both workers.
    with httpx.Client(headers={"Connection": "close"}, timeout=10) as client:
        response = client.post(f"{base_url}/team/orders/{kind}", params={"amount": amount})
    assert response.status_code == 200, response.text
    return kind, amount, response.json()["pid"]


def check_exact(srv: GunicornServer, ledger: Ledger, live: set[int]) -> str:
    text = srv.scrape()
    check_kit_exact(text, ledger, "POST", ROUTE)
    for kind in KINDS:
        assert metric_value(text, "team_orders_total", {"kind": kind}) == ledger.kinds[kind]
    check_histogram_exact(text, "team_order_amount", ledger)
    # livesum: the live workers' own increments only.
    assert metric_value(text, "team_open_orders") == sum(ledger.pids[p] for p in live)
    return text


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
    drive(srv, ledger, 120, order, need_pids=workers)
    assert set(ledger.pids) == workers
    promtool_check(check_exact(srv, ledger, live=workers))

    # SIGKILL one worker: it is replaced, and the counts keep going from where they were.
    victim = min(workers, key=lambda p: ledger.pids[p])
    live = kill_one_worker(srv, victim)
    replacement = (live - workers).pop()
    check_exact(srv, ledger, live=live)  # nothing lost with the dead worker
    drive(srv, ledger, 60, order, need_pids={replacement})
    promtool_check(check_exact(srv, ledger, live=live))
    assert metric_value(srv.scrape(), "gunicorn_worker_restarts_total") == 1
    assert ledger.all_scrapes_ok(), ledger.scrape_statuses
    figure("team-metrics", requests=ledger.total, per_pid=dict(ledger.pids))


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
