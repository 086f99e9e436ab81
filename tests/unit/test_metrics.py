"""Metrics: the workers' in-place mmap writes read back exactly, and the master's limit gauge."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from app.platform.metrics import HttpMetrics
from app.platform.metrics_server import WorkerPoolCollector


def collect(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_values_survive_the_file_growing(tmp_path: Path) -> None:
    """Enough series to make MmapedDict grow (and replace its mmap) mid-way."""
    metrics = HttpMetrics(str(tmp_path))
    routes = [f"/r/{i}" for i in range(700)]  # ~17 series each: past the first 1 MiB
    for _ in range(3):
        for route in routes:
            keys = metrics.start("GET", route)
            metrics.finish(keys, "GET", route, 200, 0.02)
    keys = metrics.start("POST", "/r/0")  # one still in flight
    values = collect(tmp_path)
    for route in (routes[0], routes[350], routes[-1]):
        labels = (("method", "GET"), ("route", route), ("status", "200"))
        assert values[("http_requests_total", labels)] == 3.0
        hist = (("method", "GET"), ("route", route))
        assert values[("http_request_duration_seconds_count", hist)] == 3.0
        assert values[("http_request_duration_seconds_sum", hist)] == 3 * 0.02
        bucket = (("le", "0.025"), ("method", "GET"), ("route", route))
        assert values[("http_request_duration_seconds_bucket", bucket)] == 3.0
    in_progress = (("method", "POST"), ("route", "/r/0"))
    assert values[("http_requests_in_progress", in_progress)] == 1.0
    metrics.finish(keys, "POST", "/r/0", 201, 0.001)
    assert collect(tmp_path)[("http_requests_in_progress", in_progress)] == 0.0


def test_concurrency_limit_follows_the_live_workers() -> None:
    """The master exports what the live workers admit: limit per worker x workers."""

    arbiter = SimpleNamespace(WORKERS={})  # gunicorn's Arbiter: pid -> worker
    collector = WorkerPoolCollector(arbiter, limit_per_worker=25)

    def limit() -> float:
        families = {f.name: f for f in collector.collect()}
        return families["http_requests_concurrency_limit"].samples[0].value

    assert limit() == 0
    arbiter.WORKERS = {101: object(), 102: object(), 103: object()}
    assert limit() == 75
    del arbiter.WORKERS[102]  # a worker died: the pod admits less until it is replaced
    assert limit() == 50
