"""Issue 8.7: a soak with worker recycling keeps memory bounded and scrapes fast.

Two workers with ``APP_MAX_REQUESTS=20`` and ``APP_MAX_REQUESTS_JITTER=5`` are driven until the
master has replaced workers at least 100 times. How the metrics stay bounded: the master's
``child_exit`` hook folds each dead worker's counters and histograms into one archive pair
(``kit_http_archive.vals`` / ``.keys``), deletes the worker's ``kit_http_<pid>.*`` files and
its live gauges with them, so a scrape reads a number of kit files bounded by the live
workers, not by the restarts. The service is the team's app, whose own prometheus-client
metrics (``tests/teamapp/api.py``) add ``*.db`` files: its live-sum gauge's are dropped with
the worker too (``mark_process_dead``), its histogram's of dead workers stay, as
prometheus-client keeps them (``app/platform/metrics_server.py``). The test checks exactly
that, plus: the scrape time after 100
restarts stays within a small factor of the early one (medians of several scrapes), the
request total survives every restart exactly, and the resident memory of the master and of
the workers stays bounded.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.resilience.helpers import figure, poll_until
from tests.support.server import GunicornServer, metric_value, running_server

TARGET_RESTARTS = 100
DRIVERS = 3
SOAK_TIMEOUT = 180
LIVE_KINDS = {"kit_http"}  # per live worker, one values file each
TEAM_LIVE_KINDS = {"gauge_livesum"}  # the team's live gauges: also one per live worker
TEAM_KEPT_KINDS = {"counter", "histogram"}  # the team's, of every worker ever (not bounded)


def _scrape_ms(srv: GunicornServer, samples: int = 9) -> float:
    timings = []
    with httpx.Client(timeout=10) as client:
        for _ in range(samples):
            start = time.perf_counter()
            client.get(srv.metrics_url).raise_for_status()
            timings.append(time.perf_counter() - start)
    return round(statistics.median(timings) * 1000, 2)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _files(path: Path) -> Counter[str]:
    """Metric files by kind: the kit's per-worker values files, its archive, any ``*.db``."""
    kinds: Counter[str] = Counter()
    for f in path.glob("kit_http_*.vals"):
        kinds["kit_http_archive" if f.stem == "kit_http_archive" else "kit_http"] += 1
    for f in path.glob("*.db"):
        kinds[f.stem.rsplit("_", 1)[0]] += 1
    return kinds


def _pool_settled(srv: GunicornServer) -> bool:
    """Every worker the master booted has finished its start-up, and two are alive."""
    events = [str(e.get("event")) for e in srv.json_logs()]
    booted = sum(1 for e in events if e.startswith("Booting worker"))
    started = sum(1 for e in events if e == "application started")
    return started >= booted and len(srv.worker_pids()) == 2


@pytest.mark.slow
def test_soak_with_worker_recycling() -> None:
    env = {"APP_MAX_REQUESTS": "20", "APP_MAX_REQUESTS_JITTER": "5"}
    with running_server(env=env, workers=2) as srv:
        assert srv.proc is not None
        hello = {"route": "/team/v1/hello", "status": "200"}
        # Early figures, after a few requests (new connections, so both workers may serve).
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=srv.base_url, timeout=10, limits=limits) as client:
            for _ in range(6):
                client.get("/team/v1/hello").raise_for_status()
        first = srv.scrape()
        baseline = metric_value(first, "http_requests_total", hello)
        early_scrape_ms = _scrape_ms(srv)
        early_files = _files(srv.metrics_dir)
        early_master_kib = _rss_kib(srv.proc.pid)
        early_workers_bytes = metric_value(first, "gunicorn_workers_resident_memory_bytes")

        ok = 0
        errors = 0
        lock = threading.Lock()
        stop = threading.Event()

        def drive() -> None:
            nonlocal ok, errors
            # A new connection per request: a recycled worker closes its keep-alive ones.
            limits = httpx.Limits(max_keepalive_connections=0)
            with httpx.Client(base_url=srv.base_url, timeout=15, limits=limits) as client:
                while not stop.is_set():
                    try:
                        status = client.get("/team/v1/hello").status_code
                    except httpx.TransportError:
                        with lock:
                            errors += 1
                        continue
                    with lock:
                        if status == 200:
                            ok += 1
                        else:
                            errors += 1

        threads = [threading.Thread(target=drive, daemon=True) for _ in range(DRIVERS)]
        started = time.monotonic()
        for t in threads:
            t.start()
        checkpoints: list[tuple[int, float, int]] = []  # restarts, scrape ms, files
        restarts = 0.0
        next_checkpoint = 25
        try:
            while restarts < TARGET_RESTARTS:
                assert time.monotonic() - started < SOAK_TIMEOUT, f"only {restarts} restarts"
                time.sleep(0.5)  # paces the progress scrapes
                restarts = metric_value(srv.scrape(), "gunicorn_worker_restarts_total")
                if restarts >= next_checkpoint:
                    checkpoints.append(
                        (int(restarts), _scrape_ms(srv, 3), sum(_files(srv.metrics_dir).values()))
                    )
                    next_checkpoint += 25
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        soak_seconds = round(time.monotonic() - started, 1)

        poll_until(lambda: _pool_settled(srv), timeout=30)  # no worker mid-boot
        last = srv.scrape()
        late_scrape_ms = _scrape_ms(srv)
        late_files = _files(srv.metrics_dir)
        late_master_kib = _rss_kib(srv.proc.pid)
        late_workers_bytes = metric_value(last, "gunicorn_workers_resident_memory_bytes")
        counted = metric_value(last, "http_requests_total", hello) - baseline
        restarts = metric_value(last, "gunicorn_worker_restarts_total")

    figure(
        "soak",
        restarts=int(restarts),
        seconds=soak_seconds,
        requests_ok=ok,
        errors=errors,
        counted=int(counted),
        scrape_ms_early=early_scrape_ms,
        scrape_ms_late=late_scrape_ms,
        checkpoints=checkpoints,
        files_early=dict(early_files),
        files_late=dict(late_files),
        master_rss_kib=f"{early_master_kib}->{late_master_kib}",
        workers_rss_mib=f"{early_workers_bytes / 2**20:.1f}->{late_workers_bytes / 2**20:.1f}",
    )
    assert restarts >= TARGET_RESTARTS
    # Counts survive every recycled worker exactly (errors: requests that may or may not
    # have been counted when their worker went away).
    assert ok <= counted <= ok + errors, (ok, counted, errors)
    # Each recycled worker can cut at most the connections it had accepted (one per driver);
    # that it cuts any at all is the bug test_worker_recycling_loses_no_request shows.
    assert errors <= DRIVERS * restarts, f"{errors} failed requests out of {ok + errors}"
    # Bounded files: at most one per kind per live worker, plus the archive. The team's
    # counter and histogram files are prometheus-client's to keep (one per worker ever).
    bounded = {kind for kind in late_files if kind not in TEAM_KEPT_KINDS}
    assert late_files["kit_http_archive"] == 1
    assert bounded <= LIVE_KINDS | TEAM_LIVE_KINDS | {"kit_http_archive"}, late_files
    assert early_files["gauge_livesum"] == 2, early_files  # the team's gauge is measured
    live = LIVE_KINDS | TEAM_LIVE_KINDS
    assert all(late_files[kind] <= 2 for kind in live), late_files  # 2 live workers
    # Scrape time stays flat: within 3x of the early median (or +20 ms on a noisy box).
    assert late_scrape_ms <= max(3 * early_scrape_ms, early_scrape_ms + 20)
    # Memory bounded: the master does the compaction, workers are fresh after recycling.
    assert late_master_kib <= early_master_kib * 1.25 + 8 * 1024
    assert late_workers_bytes <= early_workers_bytes * 1.5


@pytest.mark.slow
def test_worker_recycling_loses_no_request() -> None:
    """BUG (see the resilience report): a worker leaving after ``max_requests`` resets the
    connections it had accepted but not yet read (uvicorn's shutdown closes every connection
    without a request in progress), so the client of each gets ``Connection reset by peer``
    although the listener stayed open in the other worker and the master."""
    env = {"APP_MAX_REQUESTS": "20", "APP_MAX_REQUESTS_JITTER": "5"}
    with running_server(env=env, workers=2) as srv:
        failures: Counter[str] = Counter()
        ok = 0
        lock = threading.Lock()
        stop = threading.Event()

        def drive() -> None:
            nonlocal ok
            limits = httpx.Limits(max_keepalive_connections=0)
            with httpx.Client(base_url=srv.base_url, timeout=15, limits=limits) as client:
                while not stop.is_set():
                    try:
                        client.get("/team/v1/hello").raise_for_status()
                        with lock:
                            ok += 1
                    except httpx.HTTPError as exc:
                        with lock:
                            failures[f"{type(exc).__name__}: {exc}"] += 1

        threads = [threading.Thread(target=drive, daemon=True) for _ in range(DRIVERS)]
        for t in threads:
            t.start()
        poll_until(
            lambda: metric_value(srv.scrape(), "gunicorn_worker_restarts_total") >= 10,
            timeout=60,
            interval=0.2,
        )
        stop.set()
        for t in threads:
            t.join(30)
        restarts = metric_value(srv.scrape(), "gunicorn_worker_restarts_total")
    figure("recycling-errors", restarts=int(restarts), ok=ok, failed=sum(failures.values()))
    assert not failures, f"{sum(failures.values())} of {ok + sum(failures.values())}: {failures}"
