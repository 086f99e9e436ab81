"""Worker-side HTTP metrics, written straight into prometheus-client's multiprocess files.

Every gunicorn worker writes its own mmap files in ``PROMETHEUS_MULTIPROC_DIR``
(``counter_<pid>.db``, ``histogram_<pid>.db``, ``gauge_livesum_<pid>.db``, in
prometheus-client's own format and keys); the master merges them for each scrape with
prometheus-client's ``MultiProcessCollector`` (see ``metrics_server.py``), so one scrape
shows the exact sum over all workers, including workers that have since died.

Why not ``Counter.labels(...).inc()``: in multiprocess mode each ``inc``/``observe`` takes
a lock, checks the pid and goes through several layers; five of them per request cost
about 10 us here (``timeit``, README "Performance"), a fifth of the whole budget. Here
each file is seen through a ``memoryview`` cast to doubles, and each series is an index
into it, worked out once per (method, route, status): a request does five in-place
``view[i] += x`` (C-level 8-byte reads and writes at the value's position in the file,
where prometheus-client's own ``write_value`` would put it). That is safe without a lock
because a UvicornWorker updates metrics only from its event-loop thread, and each 8-byte
aligned store is a single write the master's reader sees whole. Without
``PROMETHEUS_MULTIPROC_DIR`` (tests in one process) the values live in a plain list.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from pathlib import Path
from typing import Any, NamedTuple

from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.utils import floatToGoString

# Buckets in seconds, tuned for an API whose p99 should stay well under a second.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "_OTHER"

REQUESTS_HELP = "HTTP requests completed, by method, route template and status code."
DURATION_HELP = "HTTP request duration in seconds, from the first byte in to the last byte out."
IN_PROGRESS_HELP = "HTTP requests being served now, by method and route template."


class _Store:
    """One metric type's values for this process: ``view[slot(key)]`` is the key's value.

    Multiprocess: ``view`` is the worker's own prometheus-client file (``MmapedDict``)
    cast to doubles; ``slot`` lays a new key out through ``MmapedDict`` itself (its
    timestamp field stays 0, as prometheus-client leaves it) and returns the value's
    index (every value sits 8-byte aligned). ``MmapedDict`` maps the file anew when it
    grows, so the view is refreshed then; the older mapping stays valid for the keys it
    covers (the same shared file pages). Single process: a list of floats.
    """

    def __init__(self, directory: str | None, filename: str) -> None:
        self._file = MmapedDict(str(Path(directory) / filename)) if directory else None
        self._slots: dict[str, int] = {}
        self.view: Any = memoryview(self._file._m).cast("d") if self._file else []

    def slot(self, key: str) -> int:
        """The index of ``key``'s value in :attr:`view`, created at 0.0 on first use."""
        slot = self._slots.get(key)
        if slot is not None:
            return slot
        file = self._file
        if file is None:
            slot = len(self.view)
            self.view.append(0.0)
        else:
            mapping = file._m
            file.write_value(key, 0.0, 0.0)
            if file._m is not mapping:
                self.view = memoryview(file._m).cast("d")
            slot = file._positions[key] // 8
        self._slots[key] = slot
        return slot


class _Route(NamedTuple):
    """The slots of one (method, route): its in-progress gauge, duration sum and buckets."""

    gauge: int
    duration_sum: int
    buckets: tuple[int, ...]


class HttpMetrics:
    """``http_requests_total``, ``http_request_duration_seconds``, ``http_requests_in_progress``."""

    def __init__(self, directory: str | None = None) -> None:
        directory = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        pid = os.getpid()
        self._counters = _Store(directory, f"counter_{pid}.db")
        self._histograms = _Store(directory, f"histogram_{pid}.db")
        self._gauges = _Store(directory, f"gauge_livesum_{pid}.db")
        self._bounds = (*LATENCY_BUCKETS, float("inf"))
        self._routes: dict[tuple[str, str], _Route] = {}
        self._counts: dict[tuple[str, str, int], int] = {}

    def _new_route(self, method: str, route: str) -> _Route:
        """Lay out the slots of a (method, route) seen for the first time.

        Every series exists in full from its first request: the gauge, the sum and each
        bucket up to +Inf (the collector only exposes what the files hold).
        """
        labels = ("method", "route")
        values = (method, route)
        name = "http_request_duration_seconds"
        series = self._routes[(method, route)] = _Route(
            self._gauges.slot(
                mmap_key(
                    "http_requests_in_progress",
                    "http_requests_in_progress",
                    labels,
                    values,
                    IN_PROGRESS_HELP,
                )
            ),
            self._histograms.slot(mmap_key(name, name + "_sum", labels, values, DURATION_HELP)),
            tuple(
                self._histograms.slot(
                    mmap_key(
                        name,
                        name + "_bucket",
                        (*labels, "le"),
                        (*values, floatToGoString(b)),
                        DURATION_HELP,
                    )
                )
                for b in self._bounds
            ),
        )
        return series

    def _new_count(self, method: str, route: str, status: int) -> int:
        """Lay out the counter slot of a (method, route, status) seen for the first time."""
        slot = self._counts[(method, route, status)] = self._counters.slot(
            mmap_key(
                "http_requests",
                "http_requests_total",
                ("method", "route", "status"),
                (method, route, str(status)),
                REQUESTS_HELP,
            )
        )
        return slot

    def start(self, method: str, route: str) -> int:
        """Mark a request in progress; returns the gauge slot to pass to :meth:`finish`."""
        series = self._routes.get((method, route)) or self._new_route(method, route)
        slot = series.gauge
        self._gauges.view[slot] += 1.0
        return slot

    def finish(self, started: int, method: str, route: str, status: int, seconds: float) -> None:
        """Count the finished request (labelled with the final route) and end in-progress."""
        self._gauges.view[started] -= 1.0
        series = self._routes.get((method, route)) or self._new_route(method, route)
        histograms = self._histograms.view
        histograms[series.buckets[bisect_left(self._bounds, seconds)]] += 1.0
        histograms[series.duration_sum] += seconds
        count = self._counts.get((method, route, status))
        if count is None:  # (not ``or``: without a directory the first slot is 0)
            count = self._new_count(method, route, status)
        self._counters.view[count] += 1.0


_shared: HttpMetrics | None = None


def http_metrics() -> HttpMetrics:
    """This process's instruments, created on first use (after the fork, in a worker)."""
    global _shared
    if _shared is None:
        _shared = HttpMetrics()
    return _shared
