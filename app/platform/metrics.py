"""Worker-side HTTP metrics, written straight into prometheus-client's multiprocess files.

Every gunicorn worker writes its own mmap files in ``PROMETHEUS_MULTIPROC_DIR``
(``counter_<pid>.db``, ``histogram_<pid>.db``, ``gauge_livesum_<pid>.db``, in
prometheus-client's own format and keys); the master merges them for each scrape with
prometheus-client's ``MultiProcessCollector`` (see ``metrics_server.py``), so one scrape
shows the exact sum over all workers, including workers that have since died.

Why not ``Counter.labels(...).inc()``: in multiprocess mode each ``inc``/``observe`` takes
a lock, checks the pid and goes through several layers; five of them per request cost
about 10 us here (``timeit``, README "Performance"), a fifth of the whole budget. This
module keeps each value as a float and stores it in place, 8 bytes at the key's position
in the file (``_Store.add``): about 2 us for the five, in ``timeit``. It is safe without a
lock because a UvicornWorker updates metrics only from its event-loop thread. Without
``PROMETHEUS_MULTIPROC_DIR`` (tests in one process) the values simply stay in memory.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from pathlib import Path
from struct import Struct

from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.utils import floatToGoString

# Buckets in seconds, tuned for an API whose p99 should stay well under a second.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "_OTHER"

REQUESTS_HELP = "HTTP requests completed, by method, route template and status code."
DURATION_HELP = "HTTP request duration in seconds, from the first byte in to the last byte out."
IN_PROGRESS_HELP = "HTTP requests being served now, by method and route template."


_pack_double = Struct("d").pack  # native, as prometheus-client reads it


class _Store:
    """One metric type's file for this process (or a plain dict when not multiprocess).

    Each series' value is written in place: 8 bytes at the position ``MmapedDict`` gave
    the key when it first wrote it (its timestamp field stays 0, as prometheus-client
    leaves it), one slice assignment instead of ``write_value``'s two calls and 16 bytes.
    The mmap is looked up at each write because ``MmapedDict`` replaces it when it grows.
    """

    def __init__(self, directory: str | None, filename: str) -> None:
        self._file = MmapedDict(str(Path(directory) / filename)) if directory else None
        self.values: dict[str, float] = {}
        self._positions: dict[str, int] = {}

    def add(self, key: str, amount: float) -> None:
        values = self.values
        value = values[key] = values.get(key, 0.0) + amount
        file = self._file
        if file is None:
            return
        pos = self._positions.get(key)
        if pos is None:
            file.write_value(key, value, 0.0)  # lays the key out in the file
            self._positions[key] = file._positions[key]
        else:
            file._m[pos : pos + 8] = _pack_double(value)


class HttpMetrics:
    """``http_requests_total``, ``http_request_duration_seconds``, ``http_requests_in_progress``."""

    def __init__(self, directory: str | None = None) -> None:
        directory = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        pid = os.getpid()
        self._counters = _Store(directory, f"counter_{pid}.db")
        self._histograms = _Store(directory, f"histogram_{pid}.db")
        self._gauges = _Store(directory, f"gauge_livesum_{pid}.db")
        self._bounds = (*LATENCY_BUCKETS, float("inf"))
        self._count_keys: dict[tuple[str, str, int], str] = {}
        self._route_keys: dict[tuple[str, str], tuple[str, str, tuple[str, ...]]] = {}

    def _keys_for(self, method: str, route: str) -> tuple[str, str, tuple[str, ...]]:
        keys = self._route_keys.get((method, route))
        if keys is None:
            labels = ("method", "route")
            values = (method, route)
            gauge = mmap_key(
                "http_requests_in_progress",
                "http_requests_in_progress",
                labels,
                values,
                IN_PROGRESS_HELP,
            )
            name = "http_request_duration_seconds"
            total = mmap_key(name, name + "_sum", labels, values, DURATION_HELP)
            buckets = tuple(
                mmap_key(
                    name,
                    name + "_bucket",
                    (*labels, "le"),
                    (*values, floatToGoString(b)),
                    DURATION_HELP,
                )
                for b in self._bounds
            )
            keys = self._route_keys[(method, route)] = (gauge, total, buckets)
            # Every series exists in full from its first request: the gauge, the sum and
            # each bucket up to +Inf (the collector only exposes what the files hold).
            self._gauges.add(gauge, 0.0)
            self._histograms.add(total, 0.0)
            for bucket in buckets:
                self._histograms.add(bucket, 0.0)
        return keys

    def start(self, method: str, route: str) -> tuple[str, str, tuple[str, ...]]:
        """Mark a request in progress; returns the keys to pass to :meth:`finish`."""
        keys = self._keys_for(method, route)
        self._gauges.add(keys[0], 1.0)
        return keys

    def finish(
        self,
        started: tuple[str, str, tuple[str, ...]],
        method: str,
        route: str,
        status: int,
        seconds: float,
    ) -> None:
        """Count the finished request (labelled with the final route) and end in-progress."""
        self._gauges.add(started[0], -1.0)
        _, total, buckets = self._keys_for(method, route)
        histograms = self._histograms
        histograms.add(buckets[bisect_left(self._bounds, seconds)], 1.0)
        histograms.add(total, seconds)
        ckey = (method, route, status)
        key = self._count_keys.get(ckey)
        if key is None:
            key = self._count_keys[ckey] = mmap_key(
                "http_requests",
                "http_requests_total",
                ("method", "route", "status"),
                (method, route, str(status)),
                REQUESTS_HELP,
            )
        self._counters.add(key, 1.0)


_shared: HttpMetrics | None = None


def http_metrics() -> HttpMetrics:
    """This process's instruments, created on first use (after the fork, in a worker)."""
    global _shared
    if _shared is None:
        _shared = HttpMetrics()
    return _shared
