"""Worker-side HTTP metrics, written to prometheus-client's multiprocess files.

Every gunicorn worker increments its own mmap files in ``PROMETHEUS_MULTIPROC_DIR``; the
master merges them for each scrape (see ``metrics_server.py``), so one scrape shows the
exact sum over all workers, including workers that have since died.

The hot path avoids ``labels()`` (a lock plus a tuple build per call) by caching each
label combination's child in a plain dict: a request costs two dict look-ups and a handful
of mmap writes.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Buckets in seconds, tuned for an API whose p99 should stay well under a second.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "_OTHER"


class HttpMetrics:
    """The three RED metrics of the SPEC, with cached label children."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # The registry only matters for single-process use (tests); in multiprocess mode
        # values live in the mmap files whatever the registry.
        kw: dict[str, Any] = {"registry": registry}
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests completed, by method, route template and status code.",
            ("method", "route", "status"),
            **kw,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration in seconds, from the first byte in to the last byte out.",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            **kw,
        )
        self.in_progress = Gauge(
            "http_requests_in_progress",
            "HTTP requests being served now, by method and route template.",
            ("method", "route"),
            multiprocess_mode="livesum",
            **kw,
        )
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}
        self._gauges: dict[tuple[str, str], Any] = {}

    def start(self, method: str, route: str) -> Any:
        """Mark a request in progress; returns the gauge child to pass to :meth:`finish`."""
        key = (method, route)
        gauge = self._gauges.get(key)
        if gauge is None:
            gauge = self._gauges[key] = self.in_progress.labels(method, route)
        gauge.inc()
        return gauge

    def finish(self, gauge: Any, method: str, route: str, status: int, seconds: float) -> None:
        """Count the finished request and take it out of the in-progress gauge."""
        gauge.dec()
        key = (method, route)
        histogram = self._histograms.get(key)
        if histogram is None:
            histogram = self._histograms[key] = self.duration.labels(method, route)
        histogram.observe(seconds)
        ckey = (method, route, status)
        counter = self._counters.get(ckey)
        if counter is None:
            counter = self._counters[ckey] = self.requests.labels(method, route, str(status))
        counter.inc()


_shared: HttpMetrics | None = None


def http_metrics() -> HttpMetrics:
    """The process-wide instruments (registered once, however many apps a test builds)."""
    global _shared
    if _shared is None:
        _shared = HttpMetrics()
    return _shared


def normalize_method(method: str) -> str:
    """Bound the ``method`` label's cardinality: unknown verbs share one value."""
    return method if method in KNOWN_METHODS else OTHER_METHOD
