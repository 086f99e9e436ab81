"""APP_HEADER_TIMEOUT_SECONDS on the real server: a request head must arrive in time.

A connection that sends nothing, or trickles a head (slowloris), is closed once the
timeout has passed (the sweep runs once a second, so within a second after it); a partial
request gets a 408 problem first. Idle time between keep-alive requests is not head time.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.server import GunicornServer, running_server

TIMEOUT = 1.0
SWEEP = 1.0  # the worker checks its connections once a second
HEAD = b"GET /api/v1/hello HTTP/1.1\r\nHost: t\r\n"


@pytest.fixture(scope="module")
def server() -> Iterator[GunicornServer]:
    with running_server({"APP_HEADER_TIMEOUT_SECONDS": str(TIMEOUT)}, workers=2) as srv:
        yield srv


def read_until_closed(sock: socket.socket, trickle: bool, limit: float) -> tuple[bytes, float]:
    """Read until the server closes; with ``trickle``, send a header byte every 0.2 s."""
    start = time.monotonic()
    sock.settimeout(0.2)
    data = b""
    while time.monotonic() - start < limit:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if trickle:
                try:
                    sock.sendall(b"X-Slow: a\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # closed while we were writing: the read below sees it
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - start


def test_a_trickled_head_gets_408_and_the_connection_closes(server: GunicornServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(HEAD)
        data, elapsed = read_until_closed(sock, trickle=True, limit=TIMEOUT + SWEEP + 3)
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert b"application/problem+json" in data and b"connection: close" in data
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + SWEEP + 1.5, elapsed
    warnings = [e for e in server.json_logs() if "not complete within" in e.get("event", "")]
    assert warnings and warnings[-1]["level"] == "warning"


def test_a_silent_connection_is_closed_without_an_answer(server: GunicornServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        data, elapsed = read_until_closed(sock, trickle=False, limit=TIMEOUT + SWEEP + 3)
    assert data == b""
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + SWEEP + 1.5, elapsed


def test_keep_alive_idle_time_is_not_head_time(server: GunicornServer) -> None:
    """Idle longer than the head timeout (but within the 5 s keep-alive), then a request
    whose head arrives in two parts: both requests are served on the one connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        reader = sock.makefile("rb")

        def response_status() -> bytes:
            status = reader.readline()
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
            return status

        sock.sendall(HEAD + b"\r\n")
        assert response_status().startswith(b"HTTP/1.1 200 ")
        time.sleep(TIMEOUT + SWEEP + 0.5)  # idle on purpose: the behaviour under test
        sock.sendall(HEAD)
        time.sleep(TIMEOUT * 0.3)  # the head's second half comes later, still in time
        sock.sendall(b"\r\n")
        assert response_status().startswith(b"HTTP/1.1 200 ")
