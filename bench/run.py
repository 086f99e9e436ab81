"""``make bench``: the hardened service vs a bare FastAPI app vs a raw ASGI callable.

All run under the same ``gunicorn -c gunicorn.conf.py`` (same UvicornWorker class, same
settings, same worker count); only the application differs. Two routes:

- hello: ``GET /api/v1/hello`` on the sample API (hardened), plain FastAPI (bare) and a raw
  ASGI callable (raw);
- orders: ``POST /shop/v1/users/{uid}/orders`` (three nested routers, a path parameter
  varied per request by a wrk script, a pydantic body, a 1 ms await, a pydantic
  response; ``bench/apps.py``), the same router through ``create_app`` (hardened), on
  plain FastAPI (bare), and through ``create_app`` with the route index off
  (``orders-no-index``), so that what the platform layer costs and what the index saves
  (``dispatch.py``: FastAPI's nested-router matching in one step) are printed apart.

wrk drives every server in alternating rounds (A, B, C, ... then B, C, ..., A) so drift on
this noisy 2-core machine hits all alike; medians and ratios are printed.

Beside requests per second it prints each server's worker CPU time per request (``utime +
stime`` of the workers from ``/proc``, over each wrk run): less sensitive than throughput to
how the two cores are shared with wrk, and the figure that says what the platform costs.

The hardened server runs as in production plus tracing at ``parentbased_traceidratio`` 0.1,
exporting to a live OTLP/HTTP sink in this process. The sink keeps the request bodies and
decodes them only after the measurement (decoding is a collector's work, elsewhere in
production), then prints how many spans it received.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.apps import hardened_tracing_env  # noqa: E402
from tests.support.otlp import OtlpReceiver  # noqa: E402
from tests.support.server import GunicornServer, wait_for  # noqa: E402

PATH = "/api/v1/hello?name=bench"
ORDERS_PATH = "/shop/v1/users/1/orders"
# A varying user id per request: labels must come from the template, not a cached path.
ORDERS_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"sku": "book-123", "quantity": 3, "unit_price": 12.5, "note": "gift wrap"}'
wrk.headers["Content-Type"] = "application/json"
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, "/shop/v1/users/" .. counter .. "/orders")
end
"""
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_ERRORS = re.compile(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)")


@dataclass
class Target:
    """One server under test: the real service harness with a different application."""

    name: str
    app: str
    env: dict[str, str]
    route: str = "hello"  # which of the two routes it serves
    rps: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # worker CPU per request
    server: GunicornServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def start(self, workers: int) -> None:
        self.server = GunicornServer(self.env, workers, app=self.app)
        self.server.start(wait_ready=False)  # the comparison apps have no /readyz
        base = self.server.base_url
        if self.route == "hello":
            probe = lambda: httpx.get(f"{base}{PATH}", timeout=5)  # noqa: E731
        else:
            body = {"sku": "b", "quantity": 1, "unit_price": 1.0}
            probe = lambda: httpx.post(f"{base}{ORDERS_PATH}", json=body, timeout=5)  # noqa: E731
        wait_for(lambda: probe().status_code == 200, timeout=90)

    def worker_cpu_seconds(self) -> float:
        """CPU time used so far by the server's current workers (user + system)."""
        assert self.server is not None
        total = 0
        for pid in self.server.worker_pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self, logdir: Path) -> None:
        """Stop the server and keep its log in ``logdir``."""
        if self.server is not None:
            self.server.stop()
            shutil.copy(self.server.log_path, logdir / f"{self.name}.log")
            self.server.close()


def run_wrk(
    target: Target, duration: int, connections: int, threads: int, script: str | None
) -> tuple[float, float]:
    port = target.port
    path = PATH if target.route == "hello" else ORDERS_PATH
    extra = ["-s", script] if target.route == "orders" and script else []
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            *extra,
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = [m for m in _ERRORS.findall(out)]
    if errors:
        raise RuntimeError(f"wrk reported errors on port {port}:\n{out}")
    rps = float(_RPS.search(out).group(1))  # type: ignore[union-attr]
    value, unit = _P99.search(out).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, p99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per server")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also run the hardened service without tracing and without access log",
    )
    parser.add_argument(
        "--routes", default="hello,orders", help="comma-separated: hello, orders (default both)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk (or: make tools)", file=sys.stderr)
        return 2

    sink = OtlpReceiver(defer_decode=True).start()
    tracing = hardened_tracing_env(sink.endpoint, "bench-hardened")
    routes = {r.strip() for r in args.routes.split(",") if r.strip()}
    targets = []
    if "hello" in routes:
        targets += [
            Target("hardened", "app.main:app", tracing),
            Target("bare", "bench.apps:bare", {}),
            Target("raw", "bench.apps:raw", {}),
        ]
    if "orders" in routes:
        targets += [
            Target("orders-hardened", "bench.apps:orders_hardened", tracing, route="orders"),
            Target("orders-bare", "bench.apps:orders_bare", {}, route="orders"),
            Target("orders-no-index", "bench.apps:orders_no_index", tracing, route="orders"),
        ]
    if args.breakdown:
        targets += [
            Target("no-tracing", "app.main:app", {}),
            Target("no-trace-no-log", "app.main:app", {"APP_ACCESS_LOG": "false"}),
            Target("bare-flat", "bench.apps:bare_flat", {}),
        ]
    logdir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    script = logdir / "orders.lua"
    script.write_text(ORDERS_SCRIPT)
    try:
        for t in targets:
            t.start(args.workers)
            run_wrk(t, args.warmup, args.connections, args.threads, str(script))
        print(
            f"machine: {os.cpu_count()} CPUs; {args.workers} workers each; wrk -t{args.threads} "
            f"-c{args.connections} -d{args.duration}s; {args.rounds} rounds, order rotated"
        )
        for r in range(args.rounds):
            order = targets[r % len(targets) :] + targets[: r % len(targets)]
            for t in order:
                cpu = t.worker_cpu_seconds()
                rps, p99 = run_wrk(t, args.duration, args.connections, args.threads, str(script))
                t.cpu_us.append((t.worker_cpu_seconds() - cpu) / (rps * args.duration) * 1e6)
                t.rps.append(rps)
                t.p99_ms.append(p99)
            print(f"round {r + 1}: " + "  ".join(f"{t.name} {t.rps[-1]:8.0f} rps" for t in targets))
    finally:
        for t in targets:
            t.stop(logdir)
        sink.stop()

    med = {t.name: statistics.median(t.rps) for t in targets}
    print()
    cpu = {t.name: statistics.median(t.cpu_us) for t in targets}
    width = max(len(t.name) for t in targets)
    print(f"{'server':{width}} {'median rps':>11} {'median p99':>11} {'CPU/request':>12}  runs")
    for t in targets:
        runs = " ".join(f"{x:.0f}" for x in t.rps)
        p99 = statistics.median(t.p99_ms)
        print(f"{t.name:{width}} {med[t.name]:11.0f} {p99:9.2f}ms {cpu[t.name]:10.1f}us  {runs}")
    spans = len(sink.snapshot())
    print()
    for label, hard, bare, target in (
        ("hello", "hardened", "bare", 0.80),
        ("orders", "orders-hardened", "orders-bare", 0.95),
    ):
        if hard not in med:
            continue
        print(
            f"{label}: hardened / bare FastAPI = {med[hard] / med[bare]:.3f} throughput, "
            f"{cpu[bare] / cpu[hard]:.3f} CPU per request (bare / hardened)   "
            f"(target >= {target:.2f})"
        )
        print(
            f"{label}: worker CPU per request hardened {cpu[hard]:.1f} us, bare {cpu[bare]:.1f} us"
            f" (platform {cpu[hard] - cpu[bare]:.1f} us)"
        )
    if "orders-no-index" in cpu:
        layer = cpu["orders-no-index"] - cpu["orders-bare"]
        saved = cpu["orders-no-index"] - cpu["orders-hardened"]
        print(
            f"orders: the platform layer alone (route index off) costs {layer:.1f} us per "
            f"request; the route index saves {saved:.1f} us"
        )
    if "raw" in med:
        print(f"hello: bare FastAPI / raw ASGI = {med['bare'] / med['raw']:.3f}")
        print(f"hello: hardened / raw ASGI     = {med['hardened'] / med['raw']:.3f}")
    print(f"spans received by the live OTLP sink: {spans}")
    print(f"server logs: {logdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
