"""Issue 8.4: slow and malformed clients.

- slowloris: a few hundred connections that trickle a request's headers and never finish
  must not stop a normal client from getting prompt 200s;
- oversized headers (one 100 KB header, or 100 KB spread over many headers, or a 100 KB
  request target) must be refused with 431 (or 400/414), not parsed and served;
- garbage on the wire gets 400;
- through all of it the master and its workers stay up.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.resilience.helpers import figure
from tests.support.server import GunicornServer, running_server

SLOW_CLIENTS = 300
SLOW_SECONDS = 7  # longer than the 5 s keep-alive timeout
STARVED_SECONDS = 5.0  # a normal request not answered by then counts as starved


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[GunicornServer]:
    with running_server(workers=2) as srv:
        yield srv


def raw_exchange(port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, return what the server answers until it closes or a response ends."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        data = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep and b"content-length:" in head.lower():
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(body) >= length:
                        break
        except (ConnectionResetError, TimeoutError):
            pass
        return data


def status_of(response: bytes) -> int | None:
    if not response.startswith(b"HTTP/1."):
        return None
    return int(response.split(b" ", 2)[1])


@pytest.mark.slow
def test_slowloris_does_not_starve_a_normal_client(hostile_server: GunicornServer) -> None:
    srv = hostile_server
    sockets: list[socket.socket] = []
    for i in range(SLOW_CLIENTS):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(b"GET /team/v1/hello HTTP/1.1\r\nHost: slow\r\nX-Slow-%d: " % i)
        sockets.append(s)
    closed_by_server: set[int] = set()
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            for i, s in enumerate(sockets):
                if i in closed_by_server:
                    continue
                try:
                    s.sendall(b"a")
                except OSError:
                    closed_by_server.add(i)
            stop.wait(1.0)  # one byte per connection per second: the slowloris pace

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    latencies: list[float] = []
    statuses: list[int] = []
    try:
        deadline = time.monotonic() + SLOW_SECONDS
        while time.monotonic() < deadline:
            start = time.monotonic()
            # A new connection each time; a starved client runs into this timeout (an error).
            response = httpx.get(f"{srv.base_url}/team/v1/hello", timeout=STARVED_SECONDS)
            latencies.append(time.monotonic() - start)
            statuses.append(response.status_code)
            time.sleep(0.2)  # paces the normal client
    finally:
        stop.set()
        trickler.join(10)
        for s in sockets:
            s.close()
    latencies.sort()
    figure(
        "slowloris",
        slow_connections=SLOW_CLIENTS,
        seconds=SLOW_SECONDS,
        normal_requests=len(statuses),
        normal_non_200=sum(1 for s in statuses if s != 200),
        normal_p50_ms=round(statistics.median(latencies) * 1000, 1),
        normal_max_ms=round(latencies[-1] * 1000, 1),
        slow_closed_by_server=len(closed_by_server),
    )
    # Latency is a figure, not an assertion (a shared 2-core machine stalls at times); a
    # starved request fails above, past STARVED_SECONDS.
    assert statuses and all(s == 200 for s in statuses), statuses
    assert srv.proc is not None and srv.proc.poll() is None
    assert len(srv.worker_pids()) == 2


OVERSIZED = {
    "one-100KB-header": b"GET /team/v1/hello HTTP/1.1\r\nHost: x\r\nX-Big: "
    + b"a" * 100_000
    + b"\r\n\r\n",
    "2000-headers-100KB": b"GET /team/v1/hello HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-H-%05d: %s\r\n" % (i, b"v" * 36) for i in range(2000))
    + b"\r\n",
    "100KB-request-target": b"GET /team/v1/hello?name=x&pad="
    + b"p" * 100_000
    + b" HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("payload", OVERSIZED.values(), ids=OVERSIZED.keys())
def test_oversized_request_head_is_refused(hostile_server: GunicornServer, payload: bytes) -> None:
    response = raw_exchange(hostile_server.port, payload)
    status = status_of(response)
    figure("oversized-head", bytes=len(payload), status=status)
    assert hostile_server.proc is not None and hostile_server.proc.poll() is None
    assert status in (400, 414, 431), response[:300]


GARBAGE = {
    "binary": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    "no-method": b"HELLO\r\n\r\n",
    "bad-version": b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    "space-in-target": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "nul-in-line": b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "lf-only-header-injection": b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rEvil: b\r\n\r\n",
    "bad-content-length": b"POST /team/v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "double-content-length": b"POST /team/v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
    b"Content-Length: 3\r\n\r\n{}",
    "cl-and-chunked": b"POST /team/v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad-chunk-size": b"POST /team/v1/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("payload", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_gets_400(hostile_server: GunicornServer, payload: bytes) -> None:
    response = raw_exchange(hostile_server.port, payload)
    assert status_of(response) == 400, response[:300]


def test_server_survives_hostile_input(hostile_server: GunicornServer) -> None:
    """Runs after the hostile tests of this module (file order): everything still up."""
    srv = hostile_server
    assert srv.proc is not None and srv.proc.poll() is None
    assert len(srv.worker_pids()) == 2
    assert httpx.get(f"{srv.base_url}/team/v1/hello", timeout=5).status_code == 200
    restarts = [e for e in srv.json_logs() if "Booting worker" in str(e.get("event"))]
    assert len(restarts) == 2, "a worker was replaced while handling hostile input"
