"""Master-side metrics: the exposition on ``APP_METRICS_PORT`` and the workers' files.

Runs inside the gunicorn master (started from the ``when_ready`` hook), never on the app
port, so a scrape works even when every worker is busy and reports the sum of all workers.

Two kinds of files share ``PROMETHEUS_MULTIPROC_DIR``, each read by its own collector:

- the kit's (``kit_http_<pid>.vals`` + ``.keys``, format in ``metrics.py``), written only
  by ``HttpMetrics`` in the workers and read by :class:`KitCollector`;
- a team's own prometheus-client metrics (``counter_<pid>.db``...), written only by
  prometheus-client in the workers and read by its ``MultiProcessCollector``, in
  prometheus-client's documented multiprocess mode.

Dead workers: gunicorn calls ``child_exit`` in the master after reaping a worker. There the
worker's kit counters and histograms are folded into the master's own archive pair
(``kit_http_archive.*``) and its files deleted, and prometheus-client's
``mark_process_dead`` drops the team's live gauges; all under the lock the scrape takes.
The kit's totals therefore never go backwards, and the number of kit files a scrape reads
stays bounded by the number of live workers instead of growing with every restart (the
team's counter files of dead workers stay, as prometheus-client keeps them).
"""

from __future__ import annotations

import glob
import json
import os
import threading
from collections import defaultdict
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Metric, ProcessCollector, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from app.platform.metrics import (
    ARCHIVE,
    FAMILIES,
    FILE_PREFIX,
    KEYS_SUFFIX,
    VALUES_SUFFIX,
    SeriesFile,
    file_paths,
    read_series,
)

_files_lock = threading.Lock()
_archives: dict[str, SeriesFile] = {}  # directory -> the master's archive writer


def prepare_directory(path: str) -> None:
    """Create the metrics directory and remove the metric files an earlier run left.

    Only the kit's files and prometheus-client's ``*.db`` are removed, so pointing the
    setting at a shared folder by mistake cannot delete anything else.
    """
    Path(path).mkdir(parents=True, exist_ok=True)
    with _files_lock:
        archive = _archives.pop(path, None)
        if archive is not None:
            archive.close()
        patterns = ("*.db", f"{FILE_PREFIX}*{VALUES_SUFFIX}", f"{FILE_PREFIX}*{KEYS_SUFFIX}")
        for pattern in patterns:
            for stale in glob.glob(os.path.join(path, pattern)):
                os.remove(stale)


def compact_dead_worker(pid: int, path: str) -> None:
    """Fold a dead worker's kit counters and histograms into the archive, then delete its
    files; drop its live gauges (the kit's with its files, the team's through
    prometheus-client)."""
    with _files_lock:
        mark_process_dead(pid, path)
        values_path, keys_path = file_paths(path, str(pid))
        if not os.path.exists(values_path):
            return
        kept = [
            (key, value)
            for key, value in read_series(values_path, keys_path)
            # gauges (in progress) go with the worker; so would a family this version
            # does not know
            if FAMILIES.get(json.loads(key)[0], ("gauge",))[0] != "gauge"
        ]
        if kept:
            archive = _archives.get(path)
            if archive is None:
                archive = _archives[path] = SeriesFile(path, ARCHIVE)
            slots = archive.slots([key for key, _ in kept])
            view = archive.view
            for slot, (_, value) in zip(slots, kept, strict=True):
                view[slot] += value
        os.remove(values_path)
        if os.path.exists(keys_path):
            os.remove(keys_path)


# A key line, parsed once: (family, part, labels without ``le``, bound, ``le`` text);
# part is "value" (counter, gauge), "bucket" or "sum"; bound orders the buckets.
_Parsed = tuple[str, str, tuple[tuple[str, str], ...], float, str]


class KitCollector:
    """The kit's families: exact sums over the live workers' files and the archive."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._parsed: dict[bytes, _Parsed] = {}

    def _parse(self, key: bytes) -> _Parsed:
        parsed = self._parsed.get(key)
        if parsed is None:
            family, sample, labels = json.loads(key)
            le = labels.pop("le", "")
            if sample.endswith("_bucket"):
                part = "bucket"
            elif sample.endswith("_sum") and FAMILIES.get(family, ("",))[0] == "histogram":
                part = "sum"
            else:
                part = "value"
            bound = float(le) if le else 0.0
            parsed = self._parsed[key] = (family, part, tuple(labels.items()), bound, le)
        return parsed

    def _sums(self) -> dict[_Parsed, float]:
        sums: dict[_Parsed, float] = defaultdict(float)
        pattern = os.path.join(self._path, f"{FILE_PREFIX}*{VALUES_SUFFIX}")
        for values_path in sorted(glob.glob(pattern)):
            keys_path = values_path[: -len(VALUES_SUFFIX)] + KEYS_SUFFIX
            parse = self._parse
            for key, value in read_series(values_path, keys_path):
                sums[parse(key)] += value
        return sums

    def collect(self) -> list[Metric]:
        with _files_lock:
            sums = self._sums()
        families: dict[str, Any] = {}
        # histogram family -> labels -> [[(bound, le, count)...], sum]
        histograms: dict[str, dict[tuple[tuple[str, str], ...], list[Any]]] = defaultdict(dict)
        for (family, part, labels, bound, le), value in sums.items():
            if part != "value":
                entry = histograms[family].get(labels)
                if entry is None:
                    entry = histograms[family][labels] = [[], 0.0]
                if part == "bucket":
                    entry[0].append((bound, le, value))
                else:
                    entry[1] += value
                continue
            metric = families.get(family)
            if metric is None:
                typ, help_text = FAMILIES.get(family, ("", ""))
                if typ not in ("counter", "gauge"):
                    continue  # a family this version does not know
                cls = CounterMetricFamily if typ == "counter" else GaugeMetricFamily
                metric = families[family] = cls(
                    family, help_text, labels=[name for name, _ in labels]
                )
            metric.add_metric([v for _, v in labels], value)
        for family, series in histograms.items():
            if FAMILIES.get(family, ("",))[0] != "histogram":
                continue
            metric = families[family] = HistogramMetricFamily(
                family, FAMILIES[family][1], labels=[name for name, _ in next(iter(series))]
            )
            for labels, (buckets, total) in series.items():
                buckets.sort()
                cumulative, running = [], 0.0
                for _, le, count in buckets:
                    running += count
                    cumulative.append((le, running))
                metric.add_metric([v for _, v in labels], cumulative, sum_value=total)
        return list(families.values())


class _LockedMultiProcessCollector(MultiProcessCollector):
    """prometheus-client's files (a team's own metrics), read under the compaction lock."""

    def collect(self) -> Any:
        with _files_lock:
            return list(super().collect())


class WorkerPoolCollector:
    """``gunicorn_workers``, ``gunicorn_workers_resident_memory_bytes`` and
    ``http_requests_concurrency_limit`` (the in-flight requests the live workers admit
    before shedding: ``APP_MAX_CONCURRENT_REQUESTS`` each), from the master. With the limit
    exported, the saturation alert and the dashboard divide by the real limit, not by a
    default written into a query."""

    def __init__(self, arbiter: Any, limit_per_worker: int) -> None:
        self._arbiter = arbiter
        self._limit_per_worker = limit_per_worker
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self, pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            return 0

    def collect(self) -> list[Metric]:
        pids = list(self._arbiter.WORKERS)
        workers = GaugeMetricFamily("gunicorn_workers", "Live gunicorn worker processes.")
        workers.add_metric([], len(pids))
        rss = GaugeMetricFamily(
            "gunicorn_workers_resident_memory_bytes",
            "Resident memory of all live workers together, in bytes.",
        )
        rss.add_metric([], sum(self._rss(pid) for pid in pids))
        limit = GaugeMetricFamily(
            "http_requests_concurrency_limit",
            "In-flight requests the live workers admit before shedding with 503 "
            "(APP_MAX_CONCURRENT_REQUESTS per worker; probes are never shed).",
        )
        limit.add_metric([], len(pids) * self._limit_per_worker)
        return [workers, rss, limit]


class RestartCounter:
    """``gunicorn_worker_restarts_total``: workers that exited while the master kept running."""

    def __init__(self) -> None:
        self.value = 0

    def collect(self) -> list[Metric]:
        family = CounterMetricFamily(
            "gunicorn_worker_restarts",
            "Worker processes that exited and were replaced (crash, kill, timeout or recycling).",
        )
        family.add_metric([], self.value)
        return [family]


def build_registry(
    path: str, arbiter: Any, restarts: RestartCounter, limit_per_worker: int
) -> CollectorRegistry:
    """The master's registry: the kit's series, a team's prometheus-client metrics, the
    worker pool and the master's process."""
    registry = CollectorRegistry()
    registry.register(KitCollector(path))
    _LockedMultiProcessCollector(registry, path=path)
    registry.register(WorkerPoolCollector(arbiter, limit_per_worker))
    registry.register(restarts)
    ProcessCollector(registry=registry)
    return registry


def _only_metrics_path(app: Any) -> Any:
    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: metrics are served on /metrics\n"]
        return app(environ, start_response)

    return wsgi


class _Server(ThreadingMixIn, WSGIServer):
    """A thread per scrape; daemon threads, so none is kept (or joined) at exit."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No stderr line per scrape: the log stream is JSON only."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_metrics_server(host: str, port: int, registry: CollectorRegistry) -> WSGIServer:
    """Serve ``/metrics`` from a daemon thread of the calling (master) process."""
    httpd = make_server(
        host,
        port,
        _only_metrics_path(make_wsgi_app(registry)),
        _Server,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=httpd.serve_forever, name="metrics-server", daemon=True)
    thread.start()
    return httpd
