"""Exact-metrics runs against the real server: what the clients did, and what a scrape says.

A :class:`Ledger` records what the clients know they did (per kind, per worker pid, the
amounts' sum); :func:`drive` sends orders from 4 concurrent clients, one connection each so
the kernel spreads them over the workers, and scrapes after every batch;
:func:`check_kit_exact` and :func:`check_histogram_exact` compare the kit's series and a
team's histogram with the ledger, :func:`promtool_check`
runs ``promtool check metrics`` on an exposition, and :func:`kill_one_worker` SIGKILLs a
worker and waits for the master to replace it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from tests.support.server import GunicornServer, metric_value, wait_for

# One order: (base URL, index) -> (kind, amount, pid of the worker that served it)
Order = Callable[[str, int], tuple[str, float, int]]


@dataclass
class Ledger:
    """What the clients know they did: per kind, per worker pid, the amounts' sum."""

    kinds: Counter[str] = field(default_factory=Counter)
    amounts: Counter[float] = field(default_factory=Counter)
    pids: Counter[int] = field(default_factory=Counter)
    amount_sum: float = 0.0
    total: int = 0
    scrape_statuses: Counter[int] = field(default_factory=Counter)

    def all_scrapes_ok(self) -> bool:
        return set(self.scrape_statuses) == {200}

    def at_most(self, bound: float) -> int:
        """Orders of an amount up to ``bound``: a histogram bucket's exact count."""
        return sum(count for amount, count in self.amounts.items() if amount <= bound)


def drive(
    srv: GunicornServer,
    ledger: Ledger,
    n: int,
    order: Order,
    need_pids: set[int] | None = None,
) -> None:
    """``n`` orders from 4 concurrent clients, a scrape after every batch of 8; then more
    batches until every pid in ``need_pids`` has served at least 5 (bounded)."""
    i = 0
    with ThreadPoolExecutor(4) as pool:
        while True:
            batch = list(pool.map(lambda k: order(srv.base_url, k), range(i, i + 8)))
            i += len(batch)
            for kind, amount, pid in batch:
                ledger.kinds[kind] += 1
                ledger.amounts[amount] += 1
                ledger.pids[pid] += 1
                ledger.amount_sum += amount
                ledger.total += 1
            ledger.scrape_statuses[httpx.get(srv.metrics_url, timeout=10).status_code] += 1
            spread = all(ledger.pids[p] >= 5 for p in (need_pids or ()))
            if i >= n and spread:
                return
            assert i < 20 * n, f"requests never reached workers {need_pids}: {ledger.pids}"


def check_kit_exact(text: str, ledger: Ledger, method: str, route: str) -> None:
    """The kit's series of ``route``: every order counted once, none in progress."""
    kit = {"method": method, "route": route}
    assert metric_value(text, "http_requests_total", {**kit, "status": "200"}) == ledger.total
    assert metric_value(text, "http_request_duration_seconds_count", kit) == ledger.total
    inf = metric_value(text, "http_request_duration_seconds_bucket", {**kit, "le": "+Inf"})
    assert inf == ledger.total
    assert metric_value(text, "http_requests_in_progress", kit) == 0


def check_histogram_exact(text: str, family: str, ledger: Ledger) -> None:
    """A team's label-less histogram of the order amounts: every bucket, the count and the
    sum exactly what the ledger says (summed over the workers' files, dead ones included)."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: Counter[str] = Counter()
    for metrics in text_string_to_metric_families(text):
        for sample in metrics.samples:
            if sample.name == f"{family}_bucket":
                buckets[sample.labels["le"]] += sample.value
    assert "+Inf" in buckets, f"no {family} buckets"
    for le, value in buckets.items():
        assert value == ledger.at_most(float(le)), (family, le, value)
    assert metric_value(text, f"{family}_count") == ledger.total
    assert metric_value(text, f"{family}_sum") == ledger.amount_sum


def promtool_check(text: str) -> None:
    """``promtool check metrics`` passes on the exposition ``text``."""
    from tests.conftest import require_tool

    promtool = require_tool("promtool", "apt-get install prometheus (or: make tools)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def kill_one_worker(srv: GunicornServer, victim: int) -> set[int]:
    """SIGKILL worker ``victim``; return the live pids once the master replaced it and the
    replacement finished its start-up (one more "application started" line)."""
    workers = set(srv.worker_pids())
    assert victim in workers
    started_before = sum(1 for e in srv.json_logs() if e.get("event") == "application started")
    os.kill(victim, signal.SIGKILL)

    def replaced() -> set[int] | None:
        pids = set(srv.worker_pids())
        started = [e for e in srv.json_logs() if e.get("event") == "application started"]
        done = len(pids) == len(workers) and victim not in pids
        return pids if done and len(started) > started_before else None

    return wait_for(replaced, timeout=30)
