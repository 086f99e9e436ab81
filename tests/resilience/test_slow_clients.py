"""Issue 16: the real attack tool, Debian's ``slowhttptest``, against the real service.

Each attack runs 10 s against two workers while a normal client sends one
``GET /team/v1/hello`` every 0.2 s on a new connection (as in the issue); the figures (the
normal client's failures in % and p99 in ms, and the tool's own count of connections the
server closed) are printed on ``FIGURE`` lines. The assertions are behaviour, never time:

- slow headers (``-H``): the head deadline cuts the tool's connections (negative control:
  with a 600 s deadline none is cut); the normal client is served throughout;
- slow body (``-B``): a body trickling faster than the body deadline is not cut, yet it
  holds no concurrency slot until it is in, so the normal client never gets a 503; a body
  pausing longer than the deadline is cut (control: 600 s, none is);
- slow read (``-X``, a 512 KiB response read a few bytes at a time): the one-shot response
  is handed to the transport at once, so the slow readers hold no slot; a reader taking
  nothing for the deadline is cut;
- a reader taking nothing at all (a socket that never reads an 8 MiB answer): cut at the
  deadline (control: with 600 s it gets the whole answer after its pause);
- range (``-R``, an "Apache killer" ``Range`` header of thousands of ranges): ignored, the
  whole representation is sent, the normal client is served.

Deadlines are 3 s here (10 s by default) so that they act within a 10 s attack; the
targets of the issue (failures <= 1 %, p99 < 100 ms) are printed, not asserted.
"""

from __future__ import annotations

import csv
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.resilience.helpers import figure
from tests.support.server import GunicornServer, metric_value

TIME_LIMIT = "Hit test time limit"
ALL_CLOSED = "No open connections left"

pytestmark = pytest.mark.slow

SLOWHTTPTEST = shutil.which("slowhttptest")
DEADLINE = 3  # APP_HEADER_TIMEOUT_SECONDS / APP_BODY_TIMEOUT_SECONDS of the hardened server
LAX = 600  # ... of the negative control
SECONDS = 10  # each attack
APP = "tests.resilience.attack_app:app"

if SLOWHTTPTEST is None:
    pytest.skip(
        "slowhttptest missing: bash scripts/tools/attack-tools.sh (as root) "
        "or apt-get install slowhttptest",
        allow_module_level=True,
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
    """One request every 0.2 s, each on a new connection, until stopped."""

    url: str
    statuses: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                status = str(httpx.get(self.url, timeout=5).status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            self.latencies_ms.append((time.monotonic() - start) * 1000)
            self.statuses.append(status)
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()

    @property
    def failures(self) -> int:
        return sum(1 for s in self.statuses if s != "200")

    def p99_ms(self) -> float:
        ordered = sorted(self.latencies_ms)
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1)


@dataclass
class Attack:
    rows: list[dict[str, int]]  # slowhttptest's per-second CSV (its last row can lag)
    normal: NormalClient
    output: str
    gauge_peak: float  # the master's http_requests_in_progress, sampled every 0.5 s

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


def attack(server: GunicornServer, name: str, args: list[str], path: str) -> Attack:
    """Run slowhttptest for ``SECONDS`` with the normal client beside it; print figures."""
    normal = NormalClient(f"{server.base_url}/team/v1/hello")
    thread = threading.Thread(target=normal.run, daemon=True)
    gauge: list[float] = []

    def sample() -> None:
        while not normal._stop.wait(0.5):
            try:
                gauge.append(metric_value(server.scrape(), "http_requests_in_progress"))
            except httpx.HTTPError:
                continue

    sampler = threading.Thread(target=sample, daemon=True)
    with tempfile.TemporaryDirectory(prefix="slowhttptest-") as tmp:
        prefix = Path(tmp) / "stats"
        thread.start()
        sampler.start()
        try:
            proc = subprocess.run(
                [
                    SLOWHTTPTEST,  # type: ignore[list-item]
                    *args,
                    "-l",
                    str(SECONDS),
                    "-g",
                    "-o",
                    str(prefix),
                    "-u",
                    f"{server.base_url}{path}",
                ],
                capture_output=True,
                text=True,
                timeout=SECONDS + 60,
            )
        finally:
            normal.stop()
            thread.join(15)
            sampler.join(15)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-3000:]
        with open(prefix.with_suffix(".csv"), newline="") as f:
            rows = [{k: int(v) for k, v in row.items()} for row in csv.DictReader(f)]
    assert rows, output[-3000:]
    result = Attack(rows, normal, output, max(gauge, default=0.0))
    figure(
        f"slowhttptest_{name}",
        attack_seconds=SECONDS,
        tool_exit=repr(result.exit_status),
        tool_seconds=result.final["Seconds"],
        tool_connections_peak=result.peak("Connected"),
        tool_closed_by_server=result.final["Closed"],
        tool_connected_at_end=result.final["Connected"],
        normal_requests=len(normal.statuses),
        normal_failures_pct=round(100 * normal.failures / max(1, len(normal.statuses)), 2),
        normal_p99_ms=normal.p99_ms(),
        normal_statuses=dict(Counter(normal.statuses)),
        in_progress_peak=result.gauge_peak,
    )
    assert normal.statuses, "the normal client sent nothing"
    assert server.proc is not None and server.proc.poll() is None, server.output()[-3000:]
    return result


# slowhttptest arguments: -c connections, -r connections/s, -i seconds between follow-ups
SLOW_HEADERS = ["-H", "-c", "400", "-r", "200", "-i", "5", "-x", "24"]
SLOW_BODY = ["-B", "-c", "400", "-r", "200", "-s", "8192", "-x", "10", "-t", "POST"]
SLOW_BODY += ["-f", "application/json"]


def test_slow_headers_are_cut_and_the_normal_client_is_served(
    hardened: GunicornServer,
) -> None:
    result = attack(hardened, "slow_headers", SLOW_HEADERS, "/team/v1/hello")
    assert result.normal.failures == 0, Counter(result.normal.statuses)
    # Every connection owes its head within 3 s: the server cut them all before the end.
    assert result.exit_status == ALL_CLOSED, result.rows


def test_slow_headers_control_without_a_deadline(lax: GunicornServer) -> None:
    result = attack(lax, "slow_headers_control", SLOW_HEADERS, "/team/v1/hello")
    assert result.exit_status == TIME_LIMIT, result.rows  # nothing else cuts them
    assert result.final["Closed"] == 0, result.rows
    assert result.final["Connected"] >= 0.9 * 400, result.rows


def test_slow_body_within_the_deadline_holds_no_slot(hardened: GunicornServer) -> None:
    """400 bodies trickling every second (under the deadline, so never cut): they are not
    admitted until their body is in, so the normal client is never shed."""
    result = attack(hardened, "slow_body", [*SLOW_BODY, "-i", "1"], "/team/v1/echo")
    assert result.exit_status == TIME_LIMIT, result.rows  # they really were trickling
    assert result.final["Closed"] < 0.1 * 400, result.rows
    assert result.peak("Connected") >= 0.9 * 400, result.rows
    assert "503" not in result.normal.statuses, Counter(result.normal.statuses)
    assert result.normal.failures == 0, Counter(result.normal.statuses)


def test_slow_body_pausing_past_the_deadline_is_cut(hardened: GunicornServer) -> None:
    result = attack(hardened, "slow_body_paused", [*SLOW_BODY, "-i", "5"], "/team/v1/echo")
    assert result.exit_status == ALL_CLOSED, result.rows
    assert result.normal.failures == 0, Counter(result.normal.statuses)


def test_slow_body_control_without_a_deadline(lax: GunicornServer) -> None:
    result = attack(lax, "slow_body_paused_control", [*SLOW_BODY, "-i", "5"], "/team/v1/echo")
    assert result.exit_status == TIME_LIMIT, result.rows
    assert result.final["Closed"] == 0, result.rows
    assert result.final["Connected"] >= 0.9 * 400, result.rows


SLOW_READ = ["-X", "-c", "200", "-r", "100", "-w", "512", "-y", "1024", "-n", "2", "-z", "32"]


def test_slow_read_holds_no_slot(hardened: GunicornServer) -> None:
    result = attack(hardened, "slow_read", SLOW_READ, "/attack/big?kb=512")
    assert result.normal.failures == 0, Counter(result.normal.statuses)
    # 200 readers were still reading at the end, yet (almost) no request was in progress:
    # the response was handed to the transport whole and its slot freed.
    assert result.exit_status == TIME_LIMIT and result.final["Connected"] >= 180, result.rows
    assert result.gauge_peak < 20, result.gauge_peak


def test_range_attack_is_ignored(hardened: GunicornServer) -> None:
    result = attack(
        hardened,
        "range",
        ["-R", "-c", "500", "-r", "50", "-a", "10", "-b", "3000"],
        "/attack/big?kb=64",
    )
    assert result.normal.failures == 0, Counter(result.normal.statuses)
    # The service does not do ranges: one of those requests gets the whole 200 answer.
    big_range = "bytes=0-," + ",".join(f"5-{i}" for i in range(1300))
    response = httpx.get(
        f"{hardened.base_url}/attack/big?kb=64", headers={"Range": big_range}, timeout=5
    )
    assert response.status_code == 200 and len(response.content) == 64 * 1024


def read_all_after_a_pause(server: GunicornServer, kb: int, pause: float) -> int:
    """Ask for ``kb`` KiB, take nothing for ``pause`` seconds, then read what still comes."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader with no room
        sock.settimeout(10)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET /attack/big?kb={kb} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        time.sleep(pause)  # reading nothing is the behaviour under test
        got = 0
        try:
            while chunk := sock.recv(1 << 20):
                got += len(chunk)
                if got >= kb * 1024:
                    break
        except (ConnectionResetError, TimeoutError):
            pass
        return got


def test_a_reader_that_takes_nothing_is_cut_at_the_deadline(
    hardened: GunicornServer, lax: GunicornServer
) -> None:
    kb, pause = 8192, DEADLINE + 3  # the deadline and the sweep's second, with margin
    cut = read_all_after_a_pause(hardened, kb, pause)
    whole = read_all_after_a_pause(lax, kb, pause)
    figure("stalled_reader", response_kib=kb, pause_s=pause, read_hardened=cut, read_lax=whole)
    assert whole >= kb * 1024  # control: with a 600 s deadline the response waits for it
    # Dropped: what the kernel's socket buffers had taken (a few MiB here) and no more.
    assert cut < kb * 1024
    assert any(
        "response not read by the client" in e.get("event", "") for e in hardened.json_logs()
    )
