"""Helpers for the resilience suite (issue 8): wrk, HAProxy, raw sockets, figures.

Every test here drives the real service (gunicorn master + UvicornWorkers) through
``tests.support.server``. The slow ones carry ``@pytest.mark.slow``; ``make test`` runs them
all, ``pytest -m 'not slow'`` skips them while iterating. Each test records its measured
figures with :func:`figure` (``tests/conftest.py``): one ``FIGURE`` line each, listed with
their targets in the "figures" section at the end of the run.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import figure as figure  # re-exported: the suite imports it from here
from tests.support.server import free_port, terminate, wait_for


@dataclass
class WrkResult:
    requests: int
    non_2xx_3xx: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeout_errors: int
    requests_per_sec: float
    p99_ms: float | None
    output: str

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeout_errors


def _duration_ms(raw: str) -> float:
    value = float(re.match(r"[\d.]+", raw).group(0))  # type: ignore[union-attr]
    if raw.endswith("us"):
        return value / 1000
    if raw.endswith("ms"):
        return value
    if raw.endswith("m"):
        return value * 60_000
    return value * 1000  # seconds


def parse_wrk(output: str) -> WrkResult:
    """Parse wrk's text report; the error lines only appear when a count is non-zero."""
    requests = re.search(r"(\d+) requests in", output)
    if requests is None:
        raise AssertionError(f"unexpected wrk output:\n{output}")
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    errors = [int(g) for g in sock.groups()] if sock else [0, 0, 0, 0]
    return WrkResult(
        requests=int(requests.group(1)),
        non_2xx_3xx=int(non2xx.group(1)) if non2xx else 0,
        connect_errors=errors[0],
        read_errors=errors[1],
        write_errors=errors[2],
        timeout_errors=errors[3],
        requests_per_sec=float(rps.group(1)) if rps else 0.0,
        p99_ms=_duration_ms(p99.group(1)) if p99 else None,
        output=output,
    )


def start_wrk(
    wrk: str, url: str, *, seconds: int, connections: int, threads: int = 2
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "--latency",
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish_wrk(proc: subprocess.Popen[str], timeout: float = 60) -> WrkResult:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"wrk failed ({proc.returncode}):\n{out}"
    return parse_wrk(out)


HAPROXY_CFG = """\
global
    maxconn 2000
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    retries 0
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 10s
    default-server check inter 200ms fall 1 rise 1

frontend fe
    bind 127.0.0.1:{frontend_port}
    default_backend app

backend app
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
{servers}
"""


class HAProxy:
    """A real Debian HAProxy in front of the given backend ports (``-db``: foreground)."""

    def __init__(self, binary: str, backends: dict[str, int], workdir: Path) -> None:
        self.port = free_port()
        self.cfg = workdir / "haproxy.cfg"
        self.log = workdir / "haproxy.log"
        servers = "\n".join(
            f"    server {name} 127.0.0.1:{port}" for name, port in backends.items()
        )
        self.cfg.write_text(HAPROXY_CFG.format(frontend_port=self.port, servers=servers))
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HAProxy:
        check = subprocess.run(
            [self.binary, "-c", "-f", str(self.cfg)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-f", str(self.cfg), "-db"], stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        terminate(self.proc)


def server_socket_open(server_port: int, client_port: int) -> bool:
    """Whether a process still holds the server's end of a loopback connection.

    Read from ``/proc/net/tcp``: once the server has closed its socket the entry is gone or
    left to the kernel (inode 0), whatever the client's end still shows; no write from the
    client is needed to find out (a write would be data the server must handle).
    """
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return fields[9] != "0"
    return False


def poll_until(condition, timeout: float = 20.0, interval: float = 0.05):
    """``wait_for`` re-exported, so tests read the same everywhere."""
    return wait_for(condition, timeout=timeout, interval=interval)
