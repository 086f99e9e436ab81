"""Worker-side HTTP and WebSocket metrics, in files only the kit writes.

Every gunicorn worker keeps its series in two files of its own in
``PROMETHEUS_MULTIPROC_DIR``, in a format the kit owns completely:

- ``kit_http_<pid>.vals``: an array of 8-byte little-endian doubles, seen through an
  ``mmap``. Slot 0 is the header, the number ``n`` of committed series; slot ``i`` (1..n)
  is the value of the ``i``-th series. The file grows by doubling (new slots read 0.0).
- ``kit_http_<pid>.keys``: the key index, append-only, one JSON line per series in slot
  order: ``[family, sample, {label: value}]``. A line is appended (one ``write``) *before*
  the header is raised to cover it, so a reader that takes ``n`` first and then reads the
  index never sees a half-written key; it reads the first ``n`` complete lines only.

prometheus-client's ``MultiProcessCollector`` globs ``*.db`` only, so a team's own
prometheus-client metrics (in its own ``counter_<pid>.db``...) and the kit's never share a
file; the master reads both (``metrics_server.py``) and serves one exposition.

Why not ``Counter.labels(...).inc()``: in multiprocess mode each ``inc``/``observe`` takes
a lock, checks the pid and goes through several layers; five of them per request cost
about 10 us here (``bench/micro.py``), a fifth of the whole budget. Here each series is
an index into the worker's mapping, worked out once per (method, route, status): a request
does five in-place ``view[i] += x`` (C-level aligned 8-byte loads and stores into the
shared pages). That is safe without a lock because a UvicornWorker updates metrics only
from its event-loop thread, and each aligned 8-byte store is a single write the master's
reader (which loads through a ``memoryview`` of its own mapping) sees whole.

Fork safety: nothing here depends on the pid until the first series is laid out, and an
``os.register_at_fork`` hook drops the inherited files in the child, so an instance built
before the fork (``app.main`` imported by a preloading master) writes files named by each
worker's own pid. Both cost nothing per request: opening happens on the slow path that
lays out a new series. Without ``PROMETHEUS_MULTIPROC_DIR`` (tests in one process) the
values live in a plain list.
"""

from __future__ import annotations

import json
import mmap
import os
import sys
import weakref
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any, NamedTuple

# Buckets in seconds, tuned for an API whose p99 should stay well under a second.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
# WebSocket connections live from a fraction of a second to hours.
WEBSOCKET_BUCKETS = (0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "_OTHER"

REQUESTS_HELP = "HTTP requests completed, by method, route template and status code."
DURATION_HELP = "HTTP request duration in seconds, from the first byte in to the last byte out."
IN_PROGRESS_HELP = "HTTP requests being served now, by method and route template."
WS_TOTAL_HELP = "WebSocket connections closed, by route template and close code."
WS_DURATION_HELP = "WebSocket connection duration in seconds, from accept to close."
WS_IN_PROGRESS_HELP = "WebSocket connections open now, by route template."

# family -> (type, help). The key index names the family; the reader takes type and help
# from here, so the index never has to carry them.
FAMILIES: dict[str, tuple[str, str]] = {
    "http_requests": ("counter", REQUESTS_HELP),
    "http_request_duration_seconds": ("histogram", DURATION_HELP),
    "http_requests_in_progress": ("gauge", IN_PROGRESS_HELP),
    "websocket_connections": ("counter", WS_TOTAL_HELP),
    "websocket_connection_duration_seconds": ("histogram", WS_DURATION_HELP),
    "websocket_connections_in_progress": ("gauge", WS_IN_PROGRESS_HELP),
}

FILE_PREFIX = "kit_http_"
VALUES_SUFFIX = ".vals"
KEYS_SUFFIX = ".keys"
ARCHIVE = "archive"  # kit_http_archive.*: the dead workers' counts, written by the master
_INITIAL_SLOTS = 8192  # 64 KiB: ~500 (method, route) pairs before the first growth

if sys.byteorder != "little":  # pragma: no cover - the format is little-endian doubles
    raise ImportError("app.platform.metrics: the kit's metric files need a little-endian host")


def le_label(bound: float) -> str:
    """A bucket bound as Prometheus writes it (``0.005``, ``1.0``, ``+Inf``)."""
    if bound == float("inf"):
        return "+Inf"
    return repr(float(bound))


def encode_key(family: str, sample: str, labels: dict[str, str]) -> bytes:
    return json.dumps([family, sample, labels], separators=(",", ":")).encode() + b"\n"


def file_paths(directory: str, owner: str) -> tuple[str, str]:
    """(values file, key index) of ``owner`` (a pid, or ``archive``)."""
    base = os.path.join(directory, f"{FILE_PREFIX}{owner}")
    return base + VALUES_SUFFIX, base + KEYS_SUFFIX


class SeriesFile:
    """One writer's pair of files: lays out series and hands out the mapping's view.

    Only one process ever writes a pair (a worker its own, the master the archive).
    """

    def __init__(self, directory: str, owner: str) -> None:
        self.values_path, self.keys_path = file_paths(directory, owner)
        self._keys_fd = os.open(self.keys_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._values_fd = os.open(self.values_path, os.O_RDWR | os.O_CREAT, 0o644)
        self.slots_by_key: dict[bytes, int] = {}
        size = os.fstat(self._values_fd).st_size
        if size:  # an archive reopened by the master: take up the series it holds
            self.view = self._map(size)
            for i, key in enumerate(read_keys(self.keys_path, int(self.view[0])), start=1):
                self.slots_by_key[key] = i
        else:
            self.view = self._map(_INITIAL_SLOTS * 8)
        self.count = len(self.slots_by_key)

    def _map(self, size: int) -> memoryview:
        if os.fstat(self._values_fd).st_size < size:
            os.ftruncate(self._values_fd, size)
        return memoryview(mmap.mmap(self._values_fd, size)).cast("d")

    def slots(self, keys: list[bytes]) -> list[int]:
        """The slots of ``keys`` (encoded key lines), the new ones laid out at 0.0.

        The new lines go out in one write and one header store covers them all, so a
        reader sees a group (a histogram's sum and every bucket) whole or not at all.
        May replace :attr:`view` (growth): callers read ``view`` after this returns. The
        previous mapping stays valid for anyone still holding it (the same file pages).
        """
        found = [self.slots_by_key.get(key) for key in keys]
        new = [key for key, slot in zip(keys, found, strict=True) if slot is None]
        if new:
            first = self.count + 1
            last = self.count + len(new)
            size = len(self.view)
            while last >= size:
                size *= 2
            if size != len(self.view):
                self.view = self._map(size * 8)
            data = b"".join(new)
            written = 0
            while written < len(data):  # a regular file takes it in one write; loop anyway
                written += os.write(self._keys_fd, data[written:])
            for slot, key in enumerate(new, start=first):
                self.slots_by_key[key] = slot
            self.count = last
            self.view[0] = float(last)  # commit: the lines above are now covered
        return [self.slots_by_key[key] for key in keys]

    def close(self) -> None:
        """Drop the descriptors (the mapping goes with the last view referencing it)."""
        for fd in (self._keys_fd, self._values_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def read_keys(path: str, count: int) -> list[bytes]:
    """The first ``count`` complete lines of a key index (fewer if it holds fewer)."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")[:-1]  # the last element is "" or an unfinished line
    return [line + b"\n" for line in lines[:count]]


def read_series(values_path: str, keys_path: str) -> Iterator[tuple[bytes, float]]:
    """(key line, value) of every committed series of one pair of files.

    The header is loaded first, then the index: every line it covers was written before
    it. Values are loaded one by one through a ``memoryview`` cast to doubles (aligned
    8-byte loads, never torn by the writer's aligned stores).
    """
    try:
        with open(values_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                return
            mapped = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
    except FileNotFoundError:  # compacted since the directory was listed
        return
    view = memoryview(mapped).cast("d")
    try:
        count = min(int(view[0]), len(view) - 1)
        try:
            keys = read_keys(keys_path, count)
        except FileNotFoundError:
            return
        values = [view[i] for i in range(1, len(keys) + 1)]
    finally:
        view.release()
        mapped.close()
    yield from zip(keys, values, strict=True)


class _Route(NamedTuple):
    """The slots of one (method, route): its in-progress gauge, duration sum and buckets."""

    gauge: int
    duration_sum: int
    buckets: tuple[int, ...]


_instances: weakref.WeakSet[HttpMetrics] = weakref.WeakSet()


class HttpMetrics:
    """``http_requests_total``, ``http_request_duration_seconds``, ``http_requests_in_progress``
    and the ``websocket_connections*`` families, for this process.

    ``directory``: where the files go; default ``PROMETHEUS_MULTIPROC_DIR``, read when the
    first series is laid out; neither: one process, values in a list.
    """

    def __init__(self, directory: str | None = None) -> None:
        self._directory = directory
        self._bounds = (*LATENCY_BUCKETS, float("inf"))
        self._ws_bounds = (*WEBSOCKET_BUCKETS, float("inf"))
        self._reset()
        _instances.add(self)

    def _reset(self) -> None:
        """Forget every slot and file (a new process, or before the first series)."""
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()
        self._file: SeriesFile | None = None
        self._opened = False
        self._list_slots: dict[bytes, int] = {}
        # Slot 0 is the header in both modes, so a slot is never 0.
        self._view: Any = [0.0]
        self._routes: dict[tuple[str, str], _Route] = {}
        self._counts: dict[tuple[str, str, int], int] = {}
        self._ws_routes: dict[str, _Route] = {}
        self._ws_counts: dict[tuple[str, int], int] = {}

    @property
    def path(self) -> str | None:
        """This process's values file, once the first series was laid out (tests)."""
        return self._file.values_path if self._file else None

    def open(self) -> None:
        """Create this process's files now rather than with the first series (a worker's
        ``post_fork`` does, so a directory it cannot write stops the worker at boot)."""
        if not self._opened:
            directory = self._directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
            if directory:
                self._file = SeriesFile(directory, str(os.getpid()))
                self._view = self._file.view
            self._opened = True

    def _slots(self, keys: list[bytes]) -> list[int]:
        """The slots of ``keys`` (see :func:`encode_key`), laid out together if new."""
        if not self._opened:
            self.open()
        file = self._file
        if file is None:
            slots = []
            for key in keys:
                slot = self._list_slots.get(key)
                if slot is None:
                    slot = self._list_slots[key] = len(self._view)
                    self._view.append(0.0)
                slots.append(slot)
            return slots
        slots = file.slots(keys)
        self._view = file.view
        return slots

    def _histogram(
        self, family: str, labels: dict[str, str], bounds: tuple[float, ...], gauge: str
    ) -> _Route:
        """Every series of a histogram and its gauge exists in full from its first use
        (the collector only exposes what the files hold), laid out in one group."""
        keys = [
            encode_key(gauge, gauge, labels),
            encode_key(family, family + "_sum", labels),
            *(
                encode_key(family, family + "_bucket", {**labels, "le": le_label(b)})
                for b in bounds
            ),
        ]
        gauge_slot, sum_slot, *buckets = self._slots(keys)
        return _Route(gauge_slot, sum_slot, tuple(buckets))

    def _new_route(self, method: str, route: str) -> _Route:
        """Lay out the slots of a (method, route) seen for the first time."""
        series = self._routes[(method, route)] = self._histogram(
            "http_request_duration_seconds",
            {"method": method, "route": route},
            self._bounds,
            "http_requests_in_progress",
        )
        return series

    def _new_count(self, method: str, route: str, status: int) -> int:
        """Lay out the counter slot of a (method, route, status) seen for the first time."""
        key = encode_key(
            "http_requests",
            "http_requests_total",
            {"method": method, "route": route, "status": str(status)},
        )
        slot = self._counts[(method, route, status)] = self._slots([key])[0]
        return slot

    def start(self, method: str, route: str) -> int:
        """Mark a request in progress; returns the gauge slot to pass to :meth:`finish`."""
        series = self._routes.get((method, route)) or self._new_route(method, route)
        slot = series.gauge
        self._view[slot] += 1.0
        return slot

    def finish(self, started: int, method: str, route: str, status: int, seconds: float) -> None:
        """Count the finished request (labelled with the final route) and end in-progress."""
        self._view[started] -= 1.0
        series = self._routes.get((method, route)) or self._new_route(method, route)
        count = self._counts.get((method, route, status)) or self._new_count(method, route, status)
        view = self._view  # (after any layout above, which may have grown the file)
        view[series.buckets[bisect_left(self._bounds, seconds)]] += 1.0
        view[series.duration_sum] += seconds
        view[count] += 1.0

    def websocket_open(self, route: str) -> int:
        """Mark a WebSocket connection open; returns the slot to pass to the close call."""
        series = self._ws_routes.get(route) or self._new_ws_route(route)
        slot = series.gauge
        self._view[slot] += 1.0
        return slot

    def websocket_close(self, started: int, route: str, code: int, seconds: float) -> None:
        """Count the closed connection by close code, its duration, and end in-progress."""
        self._view[started] -= 1.0
        series = self._ws_routes.get(route) or self._new_ws_route(route)
        count = self._ws_counts.get((route, code))
        if count is None:
            key = encode_key(
                "websocket_connections",
                "websocket_connections_total",
                {"route": route, "code": str(code)},
            )
            count = self._ws_counts[(route, code)] = self._slots([key])[0]
        view = self._view
        view[series.buckets[bisect_left(self._ws_bounds, seconds)]] += 1.0
        view[series.duration_sum] += seconds
        view[count] += 1.0

    def _new_ws_route(self, route: str) -> _Route:
        series = self._ws_routes[route] = self._histogram(
            "websocket_connection_duration_seconds",
            {"route": route},
            self._ws_bounds,
            "websocket_connections_in_progress",
        )
        return series


def _after_fork_in_child() -> None:
    """The child must not write its parent's files: every instance starts afresh."""
    for instance in list(_instances):
        instance._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)

_shared: HttpMetrics | None = None


def http_metrics() -> HttpMetrics:
    """This process's instruments (one per process; safe to create before a fork)."""
    global _shared
    if _shared is None:
        _shared = HttpMetrics()
    return _shared
