"""Issue 13.7: fork safety. With ``--preload`` (gunicorn ``preload_app = True``) the app, and
with it the kit's metrics, is built once in the master before the fork; every worker must
still write files of its own (named by its pid, none by the master's) and the totals must
be exact. Real gunicorn master, two workers, loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_team_metrics import APP, KINDS, check_exact, order
from tests.support.metrics import Ledger, drive
from tests.support.server import GunicornServer


@pytest.fixture
def preloaded() -> Iterator[GunicornServer]:
    # GUNICORN_CMD_ARGS is read after the config file, like a command-line flag.
    srv = GunicornServer({"GUNICORN_CMD_ARGS": "--preload"}, workers=2, app=APP)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        srv.close()


def kit_writers(directory: Path) -> set[int]:
    """Pids that own a kit value file (``kit_http_<pid>.vals``); the archive is not one."""
    return {
        int(p.stem.rsplit("_", 1)[1])
        for p in directory.glob("kit_http_*.vals")
        if p.stem.rsplit("_", 1)[1].isdigit()
    }


def test_preloaded_workers_write_their_own_files(preloaded: GunicornServer) -> None:
    srv = preloaded
    assert srv.proc is not None
    # The app was imported once, in the master, before the workers were forked.
    imports = [e for e in srv.json_logs() if e.get("event") == "team app imported"]
    assert [e["pid"] for e in imports] == [srv.proc.pid], imports
    workers = set(srv.worker_pids())
    assert len(workers) == 2
    # Opened by each worker's post_fork, before its first request.
    assert kit_writers(srv.metrics_dir) == workers, sorted(srv.metrics_dir.iterdir())
    ledger = Ledger()
    drive(srv, ledger, 100, order, need_pids=workers)
    check_exact(srv, ledger, live=workers)
    assert set(ledger.pids) == workers
    assert kit_writers(srv.metrics_dir) == workers, sorted(srv.metrics_dir.iterdir())
    assert srv.proc.pid not in kit_writers(srv.metrics_dir)
    assert ledger.all_scrapes_ok(), ledger.scrape_statuses
    assert sum(ledger.kinds[k] for k in KINDS) == ledger.total
