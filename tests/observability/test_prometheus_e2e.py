"""Locust and Prometheus checked against each other on the real service.

A real Prometheus scrapes the real gunicorn server (several workers) every second on
loopback while the smoke profile runs. Afterwards, per route, the counter Prometheus stored
equals Locust's request count exactly (raw counter values read with instant queries, end
minus start: no ``increase()`` extrapolation), and the p95 from ``histogram_quantile`` lies in
the same histogram bucket as Locust's p95. The chart's alert rules are loaded too and must
evaluate without error, and every dashboard query must be valid PromQL for this Prometheus.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import httpx

from loadtests import loadkit
from tests.conftest import require_tool
from tests.loadtest.locust_run import API_ROUTES, run_locust
from tests.observability.prom import (
    DASHBOARD_FILE,
    PROMETHEUS_HINT,
    RULES_FILE,
    dashboard_exprs,
    grafana_to_promql,
    running_prometheus,
)
from tests.support.server import SAMPLE_APP, metric_value, running_server, wait_for

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, math.inf)
ROUTE_RE = "|".join(sorted(route for _, route in API_ROUTES))
COUNTS = f'sum by (method, route) (http_requests_total{{job="fastapi-app", route=~"{ROUTE_RE}"}})'
BUCKETS_Q = (
    f'sum by (le) (http_request_duration_seconds_bucket{{job="fastapi-app", route=~"{ROUTE_RE}"}})'
)
P95 = f"histogram_quantile(0.95, {BUCKETS_Q})"
WORKERS = 3


def bucket_of(seconds: float) -> tuple[float, float]:
    """The (lower, upper] bucket of the service's histogram holding ``seconds``."""
    lower = 0.0
    for upper in BUCKETS:
        if seconds <= upper:
            return lower, upper
        lower = upper
    raise AssertionError(seconds)


def scrape_counts(exposition: str) -> dict[tuple[str, str], float]:
    return {
        key: metric_value(exposition, "http_requests_total", {"method": key[0], "route": key[1]})
        for key in API_ROUTES
    }


def test_prometheus_counts_equal_locust_counts_and_p95_buckets_agree(tmp_path) -> None:
    binary = require_tool("prometheus", PROMETHEUS_HINT)
    with (
        running_server(workers=WORKERS, app=SAMPLE_APP) as server,  # Locust drives the sample API
        running_prometheus(binary, f"127.0.0.1:{server.metrics_port}", [RULES_FILE]) as prom,
    ):
        # Prometheus scrapes the service and sees every worker.
        wait_for(lambda: prom.values_by('up{job="fastapi-app"}') == {(): 1.0}, timeout=30)
        wait_for(lambda: prom.values_by("gunicorn_workers") == {(): float(WORKERS)}, timeout=30)
        before = prom.values_by(COUNTS, "method", "route")
        before_buckets = prom.values_by(BUCKETS_Q, "le")
        # A fresh service: the API's series do not exist (or are 0) before the run.
        assert all(v == 0 for v in [*before.values(), *before_buckets.values()]), before

        # Locust's final figures: --json-file is written at exit (its CSV files are
        # refreshed once a second while running, so their last rows can lag the end).
        report = tmp_path / "smoke"
        run = run_locust(server.base_url, "--profile", "smoke", "--json-file", str(report))
        # The targets themselves are checked by the load-test suite; here the run must finish
        # with its verdict lines (a busy machine may miss a latency target, which is fine).
        verdicts = run.verdicts()
        assert len(verdicts) == 5 and run.returncode == (verdicts["overall"] != "PASS"), run.output
        entries = json.loads(report.with_suffix(".json").read_text())
        locust_counts = {(e["method"], e["name"]): e["num_requests"] for e in entries}
        assert set(locust_counts) == API_ROUTES
        assert sum(locust_counts.values()) > 300, locust_counts

        # Wait until the service's own counters stop moving, and Prometheus has scraped that
        # final state (no sleeps: poll until the stored value equals a direct scrape).
        previous: dict = {}

        def settled() -> dict | None:
            nonlocal previous
            current = scrape_counts(server.scrape())
            stable, previous = current == previous, current
            if not stable:
                return None
            stored = prom.values_by(COUNTS, "method", "route")
            return stored if stored == current else None

        stored = wait_for(settled, timeout=30, interval=0.5)
        measured = {key: stored[key] - before.get(key, 0.0) for key in API_ROUTES}
        assert measured == {key: float(n) for key, n in locust_counts.items()}, (
            measured,
            locust_counts,
        )
        # Nothing left in flight once Locust has exited.
        in_flight = prom.values_by(f'sum(http_requests_in_progress{{route=~"{ROUTE_RE}"}})')
        assert in_flight == {(): 0.0}

        (p95_prom,) = prom.values_by(P95).values()
        histogram: Counter[int] = Counter()
        for entry in entries:
            histogram.update({int(ms): n for ms, n in entry["response_times"].items()})
        p95_locust = loadkit.percentile(histogram, 0.95) / 1000
        (p95_line,) = run.lines("verdict max_p95_ms")  # the same figure the verdict printed
        assert p95_line.split()[3] == f"{p95_locust * 1000:g}", p95_line
        assert bucket_of(p95_prom) == bucket_of(p95_locust), (p95_prom, p95_locust)

        # The alert rules load and evaluate cleanly in this real Prometheus.
        def rules_evaluated() -> list | None:
            groups = prom.api("rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            done = rules and all(
                not r.get("lastEvaluation", "0001").startswith("0001") for r in rules
            )
            return rules if done else None

        rules = wait_for(rules_evaluated, timeout=15, interval=0.5)
        assert all(r["health"] == "ok" for r in rules), rules
        firing = [a["labels"]["alertname"] for a in prom.api("alerts")["alerts"]]
        assert firing == [], firing

        # Every dashboard query is valid PromQL for this Prometheus.
        for where, expr in dashboard_exprs(json.loads(DASHBOARD_FILE.read_text())):
            query = {"query": grafana_to_promql(expr)}
            response = httpx.get(f"{prom.url}/api/v1/query", params=query, timeout=10)
            assert response.json()["status"] == "success", (where, response.text)
