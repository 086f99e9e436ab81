"""Build helm/fastapi-app/files/grafana-dashboard.json (the chart ships it as a ConfigMap).

    .venv/bin/python observability/build_dashboard.py          # rewrite the JSON
    .venv/bin/python observability/build_dashboard.py --check  # fail when it is stale

Edit the panels here, not in the JSON; tests/observability checks the two agree and that
every query names only metrics the service exports.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "helm/fastapi-app/files/grafana-dashboard.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
# The chart rewrites `job=~"$job"` into `job="<release job>", namespace="<release namespace>"`
# and drops the job picker, so each release's dashboard shows that release only (every query
# must keep this matcher: tests/observability/test_dashboard.py checks it).
SEL = 'job=~"$job", instance=~"$instance"'
API = SEL + ', route!~"/livez|/readyz"'  # RED panels leave the probes out
RATE = "[$__rate_interval]"

_next_id = 0


def _id() -> int:
    global _next_id
    _next_id += 1
    return _next_id


def target(expr: str, legend: str = "", ref: str = "A") -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref}


def panel(
    title: str,
    targets: list[dict[str, Any]],
    x: int,
    y: int,
    w: int = 12,
    h: int = 8,
    kind: str = "timeseries",
    unit: str = "short",
    description: str = "",
) -> dict[str, Any]:
    for ref, t in zip("ABCDEFGH", targets, strict=False):
        t["refId"] = ref
    return {
        "id": _id(),
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}}
        if kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
        "targets": targets,
    }


def row(title: str, y: int) -> dict[str, Any]:
    return {
        "id": _id(),
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "panels": [],
    }


def quantile(q: str, by: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) "
        f"(rate(http_request_duration_seconds_bucket{{{API}}}{RATE})))"
    )


def build() -> dict[str, Any]:
    total = f"sum(rate(http_requests_total{{{API}}}{RATE}))"
    errors = f'sum(rate(http_requests_total{{{API}, status=~"5.."}}{RATE}))'
    panels = [
        row("Overview", 0),
        panel("Requests/s", [target(total, "req/s")], 0, 1, 4, 4, "stat", "reqps"),
        panel(
            "5xx ratio", [target(f"{errors} / {total}", "5xx")], 4, 1, 4, 4, "stat", "percentunit"
        ),
        panel("p99 latency", [target(quantile("0.99", ""), "p99")], 8, 1, 4, 4, "stat", "s"),
        panel(
            "In flight",
            [target(f"sum(http_requests_in_progress{{{SEL}}})", "in flight")],
            12,
            1,
            4,
            4,
            "stat",
        ),
        panel(
            "Workers", [target(f"sum(gunicorn_workers{{{SEL}}})", "workers")], 16, 1, 4, 4, "stat"
        ),
        panel(
            "Worker restarts (range)",
            [
                target(
                    f"sum(increase(gunicorn_worker_restarts_total{{{SEL}}}[$__range]))", "restarts"
                )
            ],
            20,
            1,
            4,
            4,
            "stat",
        ),
        row("RED per route", 5),
        panel(
            "Requests/s by route and status",
            [
                target(
                    f"sum by (method, route, status) (rate(http_requests_total{{{API}}}{RATE}))",
                    "{{method}} {{route}} {{status}}",
                )
            ],
            0,
            6,
            unit="reqps",
        ),
        panel(
            "5xx ratio by route",
            [
                target(
                    f"sum by (method, route) {errors[3:]} / sum by (method, route) {total[3:]}",
                    "{{method}} {{route}}",
                )
            ],
            12,
            6,
            unit="percentunit",
        ),
        panel(
            "Latency p50 / p95 / p99 by route",
            [
                target(quantile("0.5", "route"), "p50 {{route}}"),
                target(quantile("0.95", "route"), "p95 {{route}}"),
                target(quantile("0.99", "route"), "p99 {{route}}"),
            ],
            0,
            14,
            unit="s",
        ),
        panel(
            "4xx and shed 503 per route",
            [
                target(
                    f"sum by (route, status) "
                    f'(rate(http_requests_total{{{API}, status=~"4.."}}{RATE}))',
                    "{{route}} {{status}}",
                ),
                target(
                    f'sum by (route) (rate(http_requests_total{{{API}, status="503"}}{RATE}))',
                    "503 {{route}}",
                ),
            ],
            12,
            14,
            unit="reqps",
            description="503s are requests shed past APP_MAX_CONCURRENT_REQUESTS per worker.",
        ),
        row("Saturation", 22),
        panel(
            "In-flight requests by route",
            [
                target(
                    f"sum by (method, route) (http_requests_in_progress{{{SEL}}})",
                    "{{method}} {{route}}",
                )
            ],
            0,
            23,
        ),
        panel(
            "In flight per pod / concurrency limit",
            [
                target(
                    f"sum by (instance) (http_requests_in_progress{{{SEL}}})"
                    f" / sum by (instance) (http_requests_concurrency_limit{{{SEL}}})",
                    "{{instance}}",
                )
            ],
            12,
            23,
            unit="percentunit",
            description="Limit = http_requests_concurrency_limit (live workers x "
            "APP_MAX_CONCURRENT_REQUESTS); past it the pod answers 503.",
        ),
        row("Workers and process", 31),
        panel(
            "Workers per pod",
            [target(f"sum by (instance) (gunicorn_workers{{{SEL}}})", "{{instance}}")],
            0,
            32,
            8,
        ),
        panel(
            "Worker restarts",
            [
                target(
                    f"sum by (instance) (increase(gunicorn_worker_restarts_total{{{SEL}}}{RATE}))",
                    "{{instance}}",
                )
            ],
            8,
            32,
            8,
        ),
        panel(
            "Resident memory",
            [
                target(
                    f"sum by (instance) (gunicorn_workers_resident_memory_bytes{{{SEL}}})",
                    "workers {{instance}}",
                ),
                target(
                    f"sum by (instance) (process_resident_memory_bytes{{{SEL}}})",
                    "master {{instance}}",
                ),
            ],
            16,
            32,
            8,
            unit="bytes",
        ),
        panel(
            "Master CPU",
            [target(f"rate(process_cpu_seconds_total{{{SEL}}}{RATE})", "{{instance}}")],
            0,
            40,
            12,
            unit="percentunit",
        ),
        panel(
            "Master open file descriptors",
            [target(f"process_open_fds{{{SEL}}}", "{{instance}}")],
            12,
            40,
            12,
        ),
    ]
    variable = {"type": "query", "datasource": DS, "refresh": 2, "multi": True, "includeAll": True}
    return {
        "title": "fastapi-app",
        "uid": "fastapi-app",
        "description": "RED per route, in-flight requests, gunicorn workers and restarts.",
        "tags": ["fastapi-app"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                {
                    **variable,
                    "name": "job",
                    "label": "Job",
                    "query": {"query": "label_values(gunicorn_workers, job)", "refId": "job"},
                    "definition": "label_values(gunicorn_workers, job)",
                    "current": {},
                },
                {
                    **variable,
                    "name": "instance",
                    "label": "Pod",
                    "query": {
                        "query": 'label_values(gunicorn_workers{job=~"$job"}, instance)',
                        "refId": "instance",
                    },
                    "definition": 'label_values(gunicorn_workers{job=~"$job"}, instance)',
                    "current": {},
                },
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv[1:]:
        if OUT.read_text() != text:
            sys.exit(f"{OUT} is stale: run python {Path(__file__).name}")
        sys.exit(0)
    OUT.write_text(text)
