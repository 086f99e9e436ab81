"""The in-place mmap writes: exact values read back by prometheus-client's collector."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from app.platform.metrics import HttpMetrics


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
