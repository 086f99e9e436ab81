"""The Grafana dashboard the chart ships: generated, well-formed, and querying real metrics."""

from __future__ import annotations

import importlib.util
import json

import httpx

from tests.observability.prom import (
    DASHBOARD_FILE,
    REPO,
    TARGET_LABELS,
    dashboard_exprs,
    exported_series,
    metric_names,
    selectors,
)


def _dashboard() -> dict:
    return json.loads(DASHBOARD_FILE.read_text())


def test_dashboard_json_is_what_the_builder_produces() -> None:
    path = REPO / "observability/build_dashboard.py"
    spec = importlib.util.spec_from_file_location("build_dashboard", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD_FILE.read_text() == module.render(), "run observability/build_dashboard.py"


def test_dashboard_shape() -> None:
    board = _dashboard()
    assert board["uid"] == "fastapi-app" and board["title"]
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            assert p["targets"], p["title"]
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= variables
    # RED per route, in-flight, workers, restarts
    used = set().union(*(metric_names(e) for _, e in dashboard_exprs(board)))
    assert {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_requests_in_progress",
        "gunicorn_workers",
        "gunicorn_worker_restarts_total",
    } <= used
    by_route = [e for _, e in dashboard_exprs(board) if "by (le, route)" in e]
    assert len(by_route) == 3  # p50, p95, p99 per route


def test_every_query_names_metrics_and_labels_the_service_exports(server) -> None:
    httpx.get(server.base_url + "/api/v1/hello")
    httpx.post(server.base_url + "/api/v1/echo", json={"message": "hi"})
    exported = exported_series(server.scrape())
    exprs = dashboard_exprs(_dashboard())
    assert len(exprs) > 10
    for where, expr in exprs:
        found = selectors(expr)
        assert found, f"{where}: no metric in {expr!r}"
        for name, labels in found:
            assert name in exported, f"{where}: {name} is not exported by the service"
            unknown = labels - exported[name] - TARGET_LABELS
            assert not unknown, f"{where}: {name} has no label(s) {unknown}"


def test_every_query_carries_the_job_matcher_the_chart_scopes() -> None:
    """The chart rewrites `job=~"$job"` into this release's job and namespace: a query without
    it would show every release's series in each release's dashboard."""
    for where, expr in dashboard_exprs(_dashboard()):
        if where == "variable job":  # the job picker: the chart removes it
            continue
        for name, labels in selectors(expr):
            assert "job" in labels, f"{where}: {name} is not selected by job"
        assert 'job=~"$job"' in expr, where
