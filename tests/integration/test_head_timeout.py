"""APP_HEADER_TIMEOUT_SECONDS and APP_BODY_TIMEOUT_SECONDS on the real server.

A connection that sends nothing, or trickles a head (slowloris), is closed once the
timeout has passed (the sweep runs once a second, so within a second after it); a partial
request gets a 408 problem first. Idle time between keep-alive requests is not head time.

Timing: what is asserted is that a deadline is enforced and not before its time. The upper
bounds are generous (``SLACK``): on a loaded 2-core machine the worker's tick and this
test's own reads can each be late by seconds, and a late cut is not what these tests are
about. The sleeps left are the client's behaviour under test (idling, trickling).

A request body must keep arriving: a gap longer than the body timeout gets a 408 problem
(rendered by the app: request id, access line) and the connection closes; a body that
trickles but never pauses that long is served.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from app.platform.protocol import TIMEOUT_LINGER_SECONDS
from tests.support.server import GunicornServer, running_server, wait_for

TIMEOUT = 2.0
SWEEP = 1.0  # the worker checks its connections once a second
SLACK = 15.0  # how late a loaded machine may be: the cut must come, not come promptly
LIMIT = TIMEOUT + SWEEP + TIMEOUT_LINGER_SECONDS + SWEEP + SLACK
HEAD = b"GET /team/v1/hello HTTP/1.1\r\nHost: t\r\n"


@pytest.fixture(scope="module")
def server() -> Iterator[GunicornServer]:
    env = {
        "APP_HEADER_TIMEOUT_SECONDS": str(TIMEOUT),
        "APP_BODY_TIMEOUT_SECONDS": str(TIMEOUT),
        # Keep-alive idle is far longer than any wait here: it never closes a connection
        # in these tests, so what closes one is the deadline under test.
        "APP_KEEPALIVE_SECONDS": "120",
    }
    with running_server(env, workers=2) as srv:
        yield srv


def read_until_closed(sock: socket.socket, trickle: bool) -> tuple[bytes, float]:
    """Read until the server closes (within ``LIMIT``, or the test fails); with
    ``trickle``, send a header line every 0.2 s meanwhile."""
    start = time.monotonic()
    sock.settimeout(0.2)
    data = b""
    while time.monotonic() - start < LIMIT:
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
    else:
        raise AssertionError(f"still open after {LIMIT}s; received {data[:200]!r}")
    return data, time.monotonic() - start


def test_a_trickled_head_gets_408_and_the_connection_closes(server: GunicornServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(HEAD)
        data, elapsed = read_until_closed(sock, trickle=True)
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert b"application/problem+json" in data and b"connection: close" in data
    # the 408 (not before the deadline), then a short lingering close: the client keeps
    # trickling meanwhile, yet the connection ends (read_until_closed fails otherwise)
    assert elapsed >= TIMEOUT * 0.9, elapsed
    warnings = [e for e in server.json_logs() if "not complete within" in e.get("event", "")]
    assert warnings and warnings[-1]["level"] == "warning"


def test_a_silent_connection_is_closed_without_an_answer(server: GunicornServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        data, elapsed = read_until_closed(sock, trickle=False)
    assert data == b""
    assert elapsed >= TIMEOUT * 0.9, elapsed


def test_keep_alive_idle_time_is_not_head_time(server: GunicornServer) -> None:
    """Idle longer than the head timeout and a sweep (within the keep-alive timeout), then
    a request whose head arrives in two parts: both are served on the one connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
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
        time.sleep(TIMEOUT + SWEEP + 1)  # idle on purpose: the behaviour under test
        sock.sendall(HEAD)
        time.sleep(TIMEOUT * 0.25)  # the head's second half comes later, still in time
        sock.sendall(b"\r\n")
        assert response_status().startswith(b"HTTP/1.1 200 ")


ECHO_BODY = json.dumps({"message": "trickled"}).encode()


def echo_head(length: int, request_id: str) -> bytes:
    return (
        b"POST /team/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"X-Request-ID: %s\r\nContent-Length: %d\r\n\r\n" % (request_id.encode(), length)
    )


def test_a_stalled_body_gets_408_and_the_connection_closes(server: GunicornServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(echo_head(len(ECHO_BODY), "stalled-body-1") + ECHO_BODY[:5])
        data, elapsed = read_until_closed(sock, trickle=False)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), data[:300]
    assert b"application/problem+json" in head and b"connection: close" in head.lower()
    problem = json.loads(body)
    assert problem["status"] == 408 and problem["request_id"] == "stalled-body-1"
    assert elapsed >= TIMEOUT * 0.9, elapsed
    lines = wait_for(
        lambda: [e for e in server.access_logs() if e.get("request_id") == "stalled-body-1"],
        timeout=30,
    )
    assert lines[0]["status"] == 408, lines


def test_a_body_that_keeps_arriving_is_served(server: GunicornServer) -> None:
    """Bytes every 0.4 s for longer than the timeout in all: never a gap past it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(echo_head(len(ECHO_BODY), "trickled-body-1"))
        start = time.monotonic()
        for i in range(0, len(ECHO_BODY), 2):
            sock.sendall(ECHO_BODY[i : i + 2])
            time.sleep(TIMEOUT / 5)  # the client's pace is the behaviour under test
        took = time.monotonic() - start
        reader = sock.makefile("rb")
        status = reader.readline()
    assert took > TIMEOUT * 1.5, took
    assert status.startswith(b"HTTP/1.1 200 "), status


def test_a_stalled_body_frees_the_connection_for_a_new_request(server: GunicornServer) -> None:
    """After the 408 the worker serves the next request on a new connection at once."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(echo_head(1000, "stalled-body-2") + b"{")
        data, _ = read_until_closed(sock, trickle=False)
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(HEAD + b"\r\n")
        assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 200 ")
