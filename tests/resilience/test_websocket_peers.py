"""Issue 16: slow, silent and lingering WebSocket peers are bounded like HTTP clients.

Against the real master serving ``tests.resilience.attack_app`` (its ``/attack/ws`` echo
never closes on its own):

- a peer that completes the handshake and then neither reads nor answers pings is closed
  once a ping goes unanswered (``APP_WS_PING_INTERVAL_SECONDS`` + ``..._TIMEOUT_SECONDS``);
  negative control: with pings off the same peer stays open;
- a peer that answers pings but sends nothing is closed at the idle limit
  (``APP_WS_IDLE_TIMEOUT_SECONDS``, close 1000);
- on SIGTERM, open sessions are closed with 1001 when the drain delay ends and the master
  exits long before the graceful timeout it would otherwise wait for them.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.resilience.helpers import figure
from tests.support.server import GunicornServer, wait_for

APP = "tests.resilience.attack_app:app"


@contextmanager
def serving(env: dict[str, str], workers: int = 1) -> Iterator[GunicornServer]:
    server = GunicornServer(env, workers=workers, app=APP)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.close()


def silent_peer(port: int) -> socket.socket:
    """A raw WebSocket handshake, then nothing: no reads, no pongs."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /attack/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def closed_by_server(sock: socket.socket, limit: float) -> float | None:
    """Seconds until the server ends the connection (reading everything it sends: ping
    frames, then a close frame or end-of-file), or None if it is still open at ``limit``."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < limit:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - start
        if not chunk:
            return time.monotonic() - start
    return None


def test_a_silent_peer_is_closed_when_a_ping_goes_unanswered() -> None:
    """The peer does read here (the kernel would buffer the pings anyway) but never
    answers: the unanswered ping closes it."""
    env = {"APP_WS_PING_INTERVAL_SECONDS": "1", "APP_WS_PING_TIMEOUT_SECONDS": "1"}
    with serving(env) as server, silent_peer(server.port) as sock:
        took = closed_by_server(sock, limit=10)
        lines = wait_for(
            lambda: [e for e in server.json_logs() if e.get("event") == "websocket"], timeout=5
        )
    figure("ws_silent_peer", ping_interval_s=1, ping_timeout_s=1, closed_after_s=took)
    assert took is not None, "a peer that never answers pings was still open after 10 s"
    print(lines[-1])


def test_control_without_pings_the_silent_peer_stays_open() -> None:
    env = {"APP_WS_PING_INTERVAL_SECONDS": "0", "APP_WS_IDLE_TIMEOUT_SECONDS": "600"}
    with serving(env) as server, silent_peer(server.port) as sock:
        took = closed_by_server(sock, limit=4)
    assert took is None, f"closed after {took}s with pings off and a 600 s idle limit"


def test_a_peer_that_sends_nothing_is_closed_at_the_idle_limit() -> None:
    env = {"APP_WS_IDLE_TIMEOUT_SECONDS": "2", "APP_WS_PING_INTERVAL_SECONDS": "0.5"}
    with serving(env) as server:
        with connect(f"ws://127.0.0.1:{server.port}/attack/ws", open_timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"
            start = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=15)  # answers pings meanwhile (the library does)
            took = time.monotonic() - start
    figure("ws_idle_peer", idle_limit_s=2, closed_after_s=round(took, 2))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000, closed.value
    assert took >= 2 * 0.9


def test_sigterm_closes_sessions_after_the_drain_and_does_not_wait_for_them() -> None:
    delay, graceful = 2, 30
    env = {
        "APP_SHUTDOWN_DELAY_SECONDS": str(delay),
        "APP_GRACEFUL_TIMEOUT_SECONDS": str(graceful),
        "APP_WS_IDLE_TIMEOUT_SECONDS": "600",
    }
    with serving(env, workers=2) as server, ExitStack() as stack:
        sessions: list[ClientConnection] = []
        for i in range(6):
            ws = stack.enter_context(
                connect(f"ws://127.0.0.1:{server.port}/attack/ws", open_timeout=10)
            )
            ws.send(f"m{i}")
            assert ws.recv(timeout=5) == f"m{i}"
            sessions.append(ws)
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        codes = []
        for ws in sessions:
            try:
                ws.recv(timeout=graceful)
            except ConnectionClosed as exc:
                codes.append(exc.rcvd.code if exc.rcvd else None)
            closed_at = time.monotonic() - start
        assert server.proc is not None
        server.proc.wait(timeout=graceful + 15)
        exited_at = time.monotonic() - start
    figure(
        "ws_drain",
        sessions=len(sessions),
        shutdown_delay_s=delay,
        graceful_timeout_s=graceful,
        last_session_closed_s=round(closed_at, 2),
        master_exited_s=round(exited_at, 2),
        codes=codes,
    )
    assert codes == [1001] * len(sessions), codes
    assert closed_at >= delay * 0.9  # served through the drain window, ...
    assert server.proc.returncode == 0
    # ... then closed at its end: the master did not wait out the graceful timeout.
    assert exited_at < delay + graceful, exited_at
