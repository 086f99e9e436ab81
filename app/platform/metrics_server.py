"""Master-side metrics: the exposition on ``APP_METRICS_PORT`` and the multiprocess files.

Runs inside the gunicorn master (started from the ``when_ready`` hook), never on the app
port, so a scrape works even when every worker is busy and reports the sum of all workers.

Dead workers: gunicorn calls ``child_exit`` in the master after reaping a worker. There the
worker's live gauges are dropped (``mark_process_dead``) and its counter and histogram files
are folded into one ``*_archive.db`` file per type, under the same lock the scrape takes.
Totals therefore never go backwards, and the number of files a scrape reads stays bounded
by the number of live workers instead of growing with every restart.
"""

from __future__ import annotations

import glob
import os
import threading
from pathlib import Path
from typing import Any
from wsgiref.simple_server import make_server

from prometheus_client import CollectorRegistry, Metric, ProcessCollector, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

_COMPACTED_TYPES = ("counter", "histogram")
_files_lock = threading.Lock()


def prepare_directory(path: str) -> None:
    """Create the metrics directory and remove any ``*.db`` left by an earlier run.

    Only ``*.db`` files are removed, so pointing the setting at a shared folder by mistake
    cannot delete anything else.
    """
    Path(path).mkdir(parents=True, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)


def compact_dead_worker(pid: int, path: str) -> None:
    """Fold a dead worker's counters and histograms into the archive files, then delete them."""
    with _files_lock:
        mark_process_dead(pid, path)
        for typ in _COMPACTED_TYPES:
            dead = os.path.join(path, f"{typ}_{pid}.db")
            if not os.path.exists(dead):
                continue
            archive = MmapedDict(os.path.join(path, f"{typ}_archive.db"))
            try:
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(dead):
                    current, _ts = archive.read_value(key)
                    archive.write_value(key, current + value, timestamp)
            finally:
                archive.close()
            os.remove(dead)


class _LockedMultiProcessCollector(MultiProcessCollector):
    """Reads the files under the compaction lock, so a scrape never sees a half-moved worker."""

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
    """The master's registry: merged worker files, the worker pool and the master's process."""
    registry = CollectorRegistry()
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


def start_metrics_server(host: str, port: int, registry: CollectorRegistry) -> ThreadingWSGIServer:
    """Serve ``/metrics`` from a daemon thread of the calling (master) process."""

    class _Server(ThreadingWSGIServer):
        daemon_threads = True

    httpd = make_server(
        host,
        port,
        _only_metrics_path(make_wsgi_app(registry)),
        _Server,
        handler_class=_SilentHandler,
    )
    thread = threading.Thread(target=httpd.serve_forever, name="metrics-server", daemon=True)
    thread.start()
    return httpd
