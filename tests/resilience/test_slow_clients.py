"""Issue 16: the real attack tool, Debian's ``slowhttptest``, against the real service.

Each attack runs 10 s against two workers while a normal client sends one
``GET /team/v1/hello`` every 0.2 s, each on a new connection (one ``httpx.Client`` without
keep-alive: a visitor arriving during the attack, which is what connection-level attacks
threaten, with no client set-up in its time); the same client runs once with no attack
as the baseline its figures compare to. The figures (the normal client's failures in %,
p50 and p99 in ms, the tool's own count of connections the server closed, the in-progress
gauge, the workers' memory) are recorded as ``FIGURE`` lines and listed with the issue's
targets at the end of the run. The assertions are behaviour, never time:

- slow headers (``-H``): the head deadline cuts the tool's connections (negative control:
  with a 600 s deadline none is cut); the normal client is served throughout;
- slow body (``-B``): a body trickling faster than the body deadline is not cut, yet it
  holds no concurrency slot until it is in, so the normal client never gets a 503; a body
  pausing longer than the deadline is cut (control: 600 s, none is);
- slow read (``-X``, 100 readers taking 32 bytes every 2 s of an 8 MiB response: more than
  the loopback's kernel buffers take per connection, about 2.5 MiB, so the rest waits in
  the worker): the one-shot response is handed to the transport at once, so the readers
  hold no slot, and as their reads never let the kernel take more of it, the stalled-write
  deadline cuts them (control: with 600 s they stay connected to the end). A second
  control, the same readers of a *streamed* response: each holds its request, and its
  slot, until the deadline, which shows the gauge check can see a held slot;
- a reader that takes nothing at all (a socket that never reads an 8 MiB answer): cut at
  the deadline (control: with 600 s it gets the whole answer after its pause);
- range (``-R``, an "Apache killer" ``Range`` header of thousands of ranges): ignored, the
  whole representation is sent, the normal client is served. No negative control: nothing
  in the kit serves ranges, and Starlette's ``FileResponse``, the one piece that would,
  ignores a header of more than 100 ranges and merges overlapping ones, so there is no
  range-serving configuration to contrast with.

Deadlines are 3 s here (10 s by default) so that they act within a 10 s attack; the
targets of the issue (failures <= 1 %, p99 < 100 ms) are printed, not asserted. The normal
client's timeout is 30 s: on a loaded machine a slow answer is latency (in the figures),
and only an error or a non-200 status counts as a failure.
"""

from __future__ import annotations

import csv
import re
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_tool
from tests.resilience.helpers import figure
from tests.support.server import GunicornServer, metric_value, wait_for

TIME_LIMIT = "Hit test time limit"
ALL_CLOSED = "No open connections left"

pytestmark = pytest.mark.slow

DEADLINE = 3  # APP_HEADER_TIMEOUT_SECONDS / APP_BODY_TIMEOUT_SECONDS of the hardened server
LAX = 600  # ... of the negative control
SECONDS = 10  # each attack
APP = "tests.resilience.attack_app:app"
NORMAL_TIMEOUT = 30.0  # a slow answer is latency, not a failure
NORMAL = "normal client: a new connection per request"


@pytest.fixture(scope="module")
def slowhttptest() -> str:
    """The tool: in CI (``CI=true``) a missing one fails, elsewhere the attacks skip."""
    return require_tool(
        "slowhttptest", "sudo bash scripts/tools/attack-tools.sh (Debian's slowhttptest)"
    )


def serve(deadline: int) -> Iterator[GunicornServer]:
    env = {
        "APP_HEADER_TIMEOUT_SECONDS": str(deadline),
        "APP_BODY_TIMEOUT_SECONDS": str(deadline),
        "APP_ACCESS_LOG": "false",  # thousands of attack lines would only cost CPU here
    }
    server = GunicornServer(env, workers=2, app=APP)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.close()


@pytest.fixture(scope="module")
def hardened() -> Iterator[GunicornServer]:
    yield from serve(DEADLINE)


@pytest.fixture(scope="module")
def lax() -> Iterator[GunicornServer]:
    yield from serve(LAX)


@dataclass
class NormalClient:
    """One request every 0.2 s, each on a new connection, until stopped.

    One ``httpx.Client`` for the whole run (building a client per request would time the
    client's own set-up); with no keep-alive, each request connects anew, as a visitor
    arriving during the attack does.
    """

    url: str
    statuses: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=NORMAL_TIMEOUT, limits=limits) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    status = str(client.get(self.url).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.latencies_ms.append((time.perf_counter() - start) * 1000)
                self.statuses.append(status)
                self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()

    @property
    def failures(self) -> int:
        return sum(1 for s in self.statuses if s != "200")

    def percentile_ms(self, q: float) -> float:
        """The nearest-rank percentile; with ~50 samples the p99 is the slowest one."""
        ordered = sorted(self.latencies_ms)
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 1)


def workers_rss_mib(server: GunicornServer) -> float:
    total = 0
    for pid in server.worker_pids():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total += int(match.group(1)) if match else 0
    return round(total / 1024, 1)


@dataclass
class Attack:
    rows: list[dict[str, int]]  # slowhttptest's per-second CSV (its last row can lag)
    normal: NormalClient
    output: str
    gauge_peak: float  # the master's http_requests_in_progress, sampled every 0.5 s
    writes_cut: int  # responses the server aborted as not read (its warning lines)

    @property
    def exit_status(self) -> str:
        """Why the tool stopped: "Hit test time limit", or "No open connections left" when
        the server closed every one of its connections before the end."""
        match = re.search(r"Exit status: (.+)", re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", self.output))
        return match.group(1).strip() if match else "?"

    @property
    def final(self) -> dict[str, int]:
        return self.rows[-1]

    def peak(self, column: str) -> int:
        return max(row[column] for row in self.rows)


def measure(
    server: GunicornServer, name: str, during: Callable[[], None]
) -> tuple[NormalClient, dict[str, object]]:
    """Run the normal client (and the samplers) while ``during()`` runs; its figures."""
    normal = NormalClient(f"{server.base_url}/team/v1/hello")
    gauge: list[float] = []
    rss: list[float] = []

    def sample() -> None:
        while not normal._stop.wait(0.5):
            try:
                gauge.append(metric_value(server.scrape(), "http_requests_in_progress"))
            except httpx.HTTPError:
                continue
            rss.append(workers_rss_mib(server))

    threads = [threading.Thread(target=f, daemon=True) for f in (normal.run, sample)]
    rss_before = workers_rss_mib(server)
    for thread in threads:
        thread.start()
    try:
        during()
    finally:
        normal.stop()
        for thread in threads:
            thread.join(NORMAL_TIMEOUT + 5)
    assert normal.statuses, "the normal client sent nothing"
    assert server.proc is not None and server.proc.poll() is None, server.output()[-3000:]
    values: dict[str, object] = {
        "normal_requests": len(normal.statuses),
        "normal_failures_pct": round(100 * normal.failures / len(normal.statuses), 2),
        "normal_p50_ms": normal.percentile_ms(0.5),
        "normal_p99_ms": normal.percentile_ms(0.99),
        "normal_statuses": dict(Counter(normal.statuses)),
        "in_progress_peak": max(gauge, default=0.0),
        "workers_rss_mib_before": rss_before,
        "workers_rss_mib_peak": max(rss, default=rss_before),
    }
    return normal, values


def attack(tool: str, server: GunicornServer, name: str, args: list[str], path: str) -> Attack:
    """Run slowhttptest for ``SECONDS`` with the normal client beside it; record figures."""
    with tempfile.TemporaryDirectory(prefix="slowhttptest-") as tmp:
        prefix = Path(tmp) / "stats"
        done: list[subprocess.CompletedProcess[str]] = []

        def run_tool() -> None:
            command = [tool, *args, "-l", str(SECONDS), "-g", "-o", str(prefix)]
            command += ["-u", f"{server.base_url}{path}"]
            done.append(
                subprocess.run(command, capture_output=True, text=True, timeout=SECONDS + 60)
            )

        cut_before = stalled_warnings(server)
        normal, values = measure(server, name, run_tool)
        writes_cut = stalled_warnings(server) - cut_before
        output = done[0].stdout + done[0].stderr
        assert done[0].returncode == 0, output[-3000:]
        with open(prefix.with_suffix(".csv"), newline="") as f:
            rows = [{k: int(v) for k, v in row.items()} for row in csv.DictReader(f)]
    assert rows, output[-3000:]
    gauge_peak = float(values["in_progress_peak"])  # type: ignore[arg-type]
    result = Attack(rows, normal, output, gauge_peak, writes_cut)
    figure(
        f"slowhttptest {name} ({NORMAL})",
        attack_seconds=SECONDS,
        tool_exit=repr(result.exit_status),
        tool_seconds=result.final["Seconds"],
        tool_connections_peak=result.peak("Connected"),
        tool_closed_by_server=result.final["Closed"],
        tool_connected_at_end=result.final["Connected"],
        server_cut_unread_responses=writes_cut,
        **values,
    )
    return result


def test_baseline_the_normal_client_without_an_attack(hardened: GunicornServer) -> None:
    """The same client for the same time with no attack: what the attack rows compare to
    (first in the module, so the server is as fresh as for the first attack)."""
    stop = threading.Event()
    normal, values = measure(hardened, "baseline", lambda: stop.wait(SECONDS))
    figure(f"slowhttptest none, the baseline ({NORMAL})", attack_seconds=0, **values)
    assert normal.failures == 0, Counter(normal.statuses)


# slowhttptest arguments: -c connections, -r connections/s, -i seconds between follow-ups
SLOW_HEADERS = ["-H", "-c", "400", "-r", "200", "-i", "5", "-x", "24"]
SLOW_BODY = ["-B", "-c", "400", "-r", "200", "-s", "8192", "-x", "10", "-t", "POST"]
SLOW_BODY += ["-f", "application/json"]


def test_slow_headers_are_cut_and_the_normal_client_is_served(
    slowhttptest: str, hardened: GunicornServer
) -> None:
    result = attack(slowhttptest, hardened, "slow_headers", SLOW_HEADERS, "/team/v1/hello")
    assert result.normal.failures == 0, Counter(result.normal.statuses)
    # Every connection owes its head within 3 s: the server cut them all before the end.
    assert result.exit_status == ALL_CLOSED, result.rows


def test_slow_headers_control_without_a_deadline(slowhttptest: str, lax: GunicornServer) -> None:
    result = attack(slowhttptest, lax, "slow_headers_control", SLOW_HEADERS, "/team/v1/hello")
    assert result.exit_status == TIME_LIMIT, result.rows  # nothing else cuts them
    assert result.final["Closed"] == 0, result.rows
    assert result.final["Connected"] >= 0.9 * 400, result.rows


def test_slow_body_within_the_deadline_holds_no_slot(
    slowhttptest: str, hardened: GunicornServer
) -> None:
    """400 bodies trickling every second (under the deadline, so never cut): they are not
    admitted until their body is in, so the normal client is never shed."""
    args = [*SLOW_BODY, "-i", "1"]
    result = attack(slowhttptest, hardened, "slow_body", args, "/team/v1/echo")
    assert result.exit_status == TIME_LIMIT, result.rows  # they really were trickling
    assert result.final["Closed"] < 0.1 * 400, result.rows
    assert result.peak("Connected") >= 0.9 * 400, result.rows
    assert "503" not in result.normal.statuses, Counter(result.normal.statuses)
    assert result.normal.failures == 0, Counter(result.normal.statuses)


def test_slow_body_pausing_past_the_deadline_is_cut(
    slowhttptest: str, hardened: GunicornServer
) -> None:
    args = [*SLOW_BODY, "-i", "5"]
    result = attack(slowhttptest, hardened, "slow_body_paused", args, "/team/v1/echo")
    assert result.exit_status == ALL_CLOSED, result.rows
    assert result.normal.failures == 0, Counter(result.normal.statuses)


def test_slow_body_control_without_a_deadline(slowhttptest: str, lax: GunicornServer) -> None:
    args = [*SLOW_BODY, "-i", "5"]
    result = attack(slowhttptest, lax, "slow_body_paused_control", args, "/team/v1/echo")
    assert result.exit_status == TIME_LIMIT, result.rows
    assert result.final["Closed"] == 0, result.rows
    assert result.final["Connected"] >= 0.9 * 400, result.rows


READERS = 100
BIG_KIB = 8192  # more than the kernel buffers of one loopback connection take
SLOW_READ = ["-X", "-c", str(READERS), "-r", "50", "-w", "512", "-y", "1024", "-n", "2"]
SLOW_READ += ["-z", "32"]
# The tool cannot see these cuts: its reader still has a socket buffer of bytes to take at
# 32 bytes per 2 s when the reset comes. The server's warning lines count them.


def test_slow_read_holds_no_slot_and_is_cut_at_the_deadline(
    slowhttptest: str, hardened: GunicornServer
) -> None:
    result = attack(slowhttptest, hardened, "slow_read", SLOW_READ, f"/attack/big?kb={BIG_KIB}")
    assert result.normal.failures == 0, Counter(result.normal.statuses)
    # The one-shot response was handed to the transport whole and its slot freed: (almost)
    # no request in progress while 100 readers were connected, ...
    assert result.peak("Connected") >= 0.9 * READERS, result.rows
    assert result.gauge_peak < 10, result.gauge_peak
    # ... and 32 bytes every 2 s never let the kernel take more of the response: the
    # stalled-write deadline cut (nearly) every reader.
    assert result.writes_cut >= 0.9 * READERS, result.writes_cut


def test_slow_read_control_without_a_deadline(slowhttptest: str, lax: GunicornServer) -> None:
    result = attack(slowhttptest, lax, "slow_read_control", SLOW_READ, f"/attack/big?kb={BIG_KIB}")
    assert result.writes_cut == 0  # nothing else cuts them: ...
    assert result.exit_status == TIME_LIMIT, result.rows
    assert result.final["Closed"] == 0, result.rows
    assert result.final["Connected"] >= 0.9 * READERS, result.rows


def test_slow_read_control_a_streamed_response_holds_its_slot(
    slowhttptest: str, hardened: GunicornServer
) -> None:
    """The same readers of the same bytes, streamed: each request stays in progress (its
    slot held) while its reader is slow, until the deadline cuts it. The gauge check of the
    one-shot test above can therefore see held slots."""
    path = f"/attack/big-stream?kb={BIG_KIB}"
    result = attack(slowhttptest, hardened, "slow_read_streamed_control", SLOW_READ, path)
    assert result.gauge_peak >= 0.5 * READERS, result.gauge_peak
    assert result.writes_cut >= 0.9 * READERS, result.writes_cut  # the deadline freed them


def test_range_attack_is_ignored(slowhttptest: str, hardened: GunicornServer) -> None:
    result = attack(
        slowhttptest,
        hardened,
        "range",
        ["-R", "-c", "500", "-r", "50", "-a", "10", "-b", "3000"],
        "/attack/big?kb=64",
    )
    assert result.normal.failures == 0, Counter(result.normal.statuses)
    # The service does not do ranges: one of those requests gets the whole 200 answer.
    big_range = "bytes=0-," + ",".join(f"5-{i}" for i in range(1300))
    response = httpx.get(
        f"{hardened.base_url}/attack/big?kb=64", headers={"Range": big_range}, timeout=30
    )
    assert response.status_code == 200 and len(response.content) == 64 * 1024


def read_after(server: GunicornServer, kb: int, wait: Callable[[], object]) -> int:
    """Ask for ``kb`` KiB, take nothing until ``wait()`` returns, then read what still comes."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader with no room
        sock.settimeout(30)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET /attack/big?kb={kb} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        wait()  # reading nothing meanwhile is the behaviour under test
        got = 0
        try:
            while chunk := sock.recv(1 << 20):
                got += len(chunk)
                if got >= kb * 1024:
                    break
        except (ConnectionResetError, TimeoutError):
            pass
        return got


def stalled_warnings(server: GunicornServer) -> int:
    return sum("response not read by the client" in e.get("event", "") for e in server.json_logs())


def test_a_reader_that_takes_nothing_is_cut_at_the_deadline(
    hardened: GunicornServer, lax: GunicornServer
) -> None:
    """The hardened server's warning says when it cut the reader (polled, so a loaded
    machine only makes it later); the control waits as long and gets the whole answer."""
    before = stalled_warnings(hardened)
    start = time.monotonic()
    cut = read_after(
        hardened,
        BIG_KIB,
        lambda: wait_for(lambda: stalled_warnings(hardened) > before, timeout=DEADLINE + 60),
    )
    took = time.monotonic() - start
    stop = threading.Event()
    whole = read_after(lax, BIG_KIB, lambda: stop.wait(max(took, DEADLINE + 1)))
    figure(
        "stalled_reader",
        response_kib=BIG_KIB,
        cut_after_s=round(took, 1),
        read_hardened=cut,
        read_lax=whole,
    )
    assert whole >= BIG_KIB * 1024  # control: with a 600 s deadline the response waits for it
    # Dropped: what the kernel's socket buffers had taken (a few MiB here) and no more.
    assert cut < BIG_KIB * 1024
    assert took >= DEADLINE * 0.9  # not before the deadline
