"""Metrics: the workers' in-place mmap writes read back exactly (the kit's own files, beside
a team's prometheus-client files), fork safety, WebSocket series, the master's limit gauge."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from app.platform.metrics import REQUESTS_HELP, HttpMetrics, read_series
from app.platform.metrics_server import KitCollector, WorkerPoolCollector, compact_dead_worker
from tests.conftest import figure

GET_D = (("method", "GET"), ("route", "/d"))


def collect(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What the master's collector reads from the files (sample, sorted labels) -> value."""
    registry = CollectorRegistry()
    registry.register(KitCollector(str(directory)))
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_values_survive_the_file_growing(tmp_path: Path) -> None:
    """Enough series to make the values file grow (and replace its mmap) several times."""
    metrics = HttpMetrics(str(tmp_path))
    routes = [f"/r/{i}" for i in range(700)]  # 17 series each: past 64 KiB twice
    for _ in range(3):
        for route in routes:
            keys = metrics.start("GET", route)
            metrics.finish(keys, "GET", route, 200, 0.02)
    assert os.path.getsize(metrics.path or "") > 8192 * 8  # it did grow
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


def test_the_kit_and_a_team_never_share_a_file(tmp_path: Path, monkeypatch: Any) -> None:
    """A team's prometheus-client metric in the same worker and directory: each side reads
    back exactly what it wrote, and the kit writes no file prometheus-client reads."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    value_class = values.MultiProcessValue()  # what prometheus-client uses in a worker
    team = value_class("counter", "team_orders", "team_orders_total", ("kind",), ("a",), "h")
    metrics = HttpMetrics()  # the directory from the environment, as in a worker
    for i in range(50):
        team.inc(2)
        metrics.finish(metrics.start("GET", f"/k/{i % 5}"), "GET", f"/k/{i % 5}", 200, 0.01)
    kit_files = {p.name for p in tmp_path.iterdir() if p.name.startswith("kit_")}
    assert kit_files == {f"kit_http_{os.getpid()}.vals", f"kit_http_{os.getpid()}.keys"}
    assert {p.name for p in tmp_path.glob("*.db")} == {f"counter_{os.getpid()}.db"}
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    team_samples = {s.name: s.value for f in registry.collect() for s in f.samples}
    assert team_samples == {"team_orders_total": 100.0}
    kit = collect(tmp_path)
    for i in range(5):
        labels = (("method", "GET"), ("route", f"/k/{i}"), ("status", "200"))
        assert kit[("http_requests_total", labels)] == 10.0


def test_a_reader_sees_only_committed_keys(tmp_path: Path) -> None:
    """A key line not yet covered by the header (half written, or whole but uncommitted)
    is not read; the series before it read exactly."""
    metrics = HttpMetrics(str(tmp_path))
    metrics.finish(metrics.start("GET", "/a"), "GET", "/a", 200, 0.01)
    before = collect(tmp_path)
    keys = Path(metrics.path or "").with_suffix(".keys")
    with open(keys, "ab") as f:  # a writer caught mid-line
        f.write(b'["http_requests","http_requests_total",{"method":"GE')
    assert collect(tmp_path) == before
    with open(keys, "ab") as f:  # the line finished, the header not yet raised
        f.write(b'T","route":"/b","status":"200"}]\n')
    assert collect(tmp_path) == before


def test_concurrent_layout_and_scrapes_read_whole_values(tmp_path: Path) -> None:
    """A real second process lays out thousands of series (growing its file) while this
    one collects over and over: every collect parses, and no counter ever goes down."""
    metrics = HttpMetrics(str(tmp_path))
    routes = 1500
    pid = os.fork()
    if pid == 0:  # the writer
        try:
            for _ in range(2):
                for i in range(routes):
                    metrics.finish(metrics.start("GET", f"/c/{i}"), "GET", f"/c/{i}", 200, 0.01)
        finally:
            os._exit(0)
    seen: dict[Any, float] = {}
    scrapes = 0
    while True:
        done = os.waitpid(pid, os.WNOHANG)[0] == pid
        values = collect(tmp_path)
        now = {k: v for k, v in values.items() if k[0] == "http_requests_total"}
        scrapes += 1
        # A route's histogram is laid out as one group: never a sum without its buckets.
        sums = [k[1] for k in values if k[0] == "http_request_duration_seconds_sum"]
        for labels in sums:
            inf = (("le", "+Inf"), *labels)
            assert ("http_request_duration_seconds_bucket", inf) in values, labels
        for key, value in now.items():
            assert value >= seen.get(key, 0.0), key
        seen = now
        if done:
            break
    assert len(seen) == routes and set(seen.values()) == {2.0}
    figure("concurrent-layout", scrapes=scrapes, series=routes * 17)


def test_an_instance_built_before_a_fork_writes_files_of_each_process(tmp_path: Path) -> None:
    """Fork safety (preload): the parent's instance, inherited by a child, must write a file
    named by the child's pid, never the parent's."""
    metrics = HttpMetrics(str(tmp_path))  # built before anything was counted
    metrics.finish(metrics.start("GET", "/f"), "GET", "/f", 200, 0.01)
    parent_file = metrics.path
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for _ in range(3):
                metrics.finish(metrics.start("GET", "/f"), "GET", "/f", 200, 0.01)
            code = 0 if metrics.path == str(tmp_path / f"kit_http_{os.getpid()}.vals") else 2
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    metrics.finish(metrics.start("GET", "/f"), "GET", "/f", 200, 0.01)
    assert metrics.path == parent_file == str(tmp_path / f"kit_http_{os.getpid()}.vals")
    assert (tmp_path / f"kit_http_{pid}.vals").exists()
    labels = (("method", "GET"), ("route", "/f"), ("status", "200"))

    def count(path: str) -> float:
        keys = path[: -len(".vals")] + ".keys"
        return sum(v for k, v in read_series(path, keys) if b"http_requests_total" in k)

    assert count(parent_file or "") == 2.0
    assert count(str(tmp_path / f"kit_http_{pid}.vals")) == 3.0
    assert collect(tmp_path)[("http_requests_total", labels)] == 5.0


def test_dead_workers_are_folded_into_one_archive(tmp_path: Path) -> None:
    """Compaction: a dead worker's counters and histograms kept, its gauges dropped, its
    files gone; a second dead worker joins the same archive."""
    for dead in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                worker = HttpMetrics(str(tmp_path))
                for _ in range(4):
                    worker.finish(worker.start("GET", "/d"), "GET", "/d", 200, 0.2)
                worker.start("GET", "/d")  # in flight when it died
                worker.websocket_close(worker.websocket_open("/ws"), "/ws", 1000, 5.0)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert collect(tmp_path)[("http_requests_in_progress", GET_D)] == 1.0
        compact_dead_worker(pid, str(tmp_path))
        assert not (tmp_path / f"kit_http_{pid}.vals").exists()
        assert not (tmp_path / f"kit_http_{pid}.keys").exists()
        values = collect(tmp_path)
        assert values[("http_requests_total", (*GET_D, ("status", "200")))] == 4.0 * (dead + 1)
        assert values[("http_request_duration_seconds_count", GET_D)] == 4.0 * (dead + 1)
        assert values[("http_request_duration_seconds_sum", GET_D)] == 0.8 * (dead + 1)
        assert ("http_requests_in_progress", GET_D) not in values
        ws = (("code", "1000"), ("route", "/ws"))
        assert values[("websocket_connections_total", ws)] == dead + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "kit_http_archive.keys",
        "kit_http_archive.vals",
    ]


def test_websocket_series(tmp_path: Path) -> None:
    metrics = HttpMetrics(str(tmp_path))
    a = metrics.websocket_open("/ws/{room}")
    b = metrics.websocket_open("/ws/{room}")
    c = metrics.websocket_open("/chat")
    values = collect(tmp_path)
    assert values[("websocket_connections_in_progress", (("route", "/ws/{room}"),))] == 2
    assert values[("websocket_connections_in_progress", (("route", "/chat"),))] == 1
    metrics.websocket_close(a, "/ws/{room}", 1000, 0.05)
    metrics.websocket_close(b, "/ws/{room}", 1001, 120.0)
    metrics.websocket_close(c, "/chat", 1000, 7200.0)
    values = collect(tmp_path)
    room = (("route", "/ws/{room}"),)
    assert values[("websocket_connections_in_progress", room)] == 0
    assert values[("websocket_connections_total", (("code", "1000"), *room))] == 1
    assert values[("websocket_connections_total", (("code", "1001"), *room))] == 1
    assert values[("websocket_connection_duration_seconds_count", room)] == 2
    assert values[("websocket_connection_duration_seconds_sum", room)] == 120.05
    buckets = {
        dict(labels)["le"]: v
        for (name, labels), v in values.items()
        if name == "websocket_connection_duration_seconds_bucket"
        and ("route", "/ws/{room}") in labels
    }
    assert list(buckets) == ["0.1", "1.0", "10.0", "60.0", "300.0", "1800.0", "3600.0", "+Inf"]
    assert list(buckets.values()) == [1, 1, 1, 1, 2, 2, 2, 2]  # cumulative
    chat = (("le", "3600.0"), ("route", "/chat"))
    assert values[("websocket_connection_duration_seconds_bucket", chat)] == 0
    inf = (("le", "+Inf"), ("route", "/chat"))
    assert values[("websocket_connection_duration_seconds_bucket", inf)] == 1


def test_exposition_types_and_promtool(tmp_path: Path) -> None:
    """The kit's families come out typed, with help, and pass promtool."""
    metrics = HttpMetrics(str(tmp_path))
    metrics.finish(metrics.start("GET", "/x/{id}"), "GET", "/x/{id}", 404, 0.3)
    metrics.websocket_close(metrics.websocket_open("/ws"), "/ws", 1000, 2.0)
    metrics.start("POST", "/x/{id}")
    registry = CollectorRegistry()
    registry.register(KitCollector(str(tmp_path)))
    text = generate_latest(registry).decode()
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert types == {
        "http_requests": "counter",
        "http_request_duration_seconds": "histogram",
        "http_requests_in_progress": "gauge",
        "websocket_connections": "counter",
        "websocket_connection_duration_seconds": "histogram",
        "websocket_connections_in_progress": "gauge",
    }
    assert f"# HELP http_requests_total {REQUESTS_HELP}" in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found; install it with: apt-get install prometheus")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
