"""Issue 16: slow, silent and lingering WebSocket peers are bounded like HTTP clients.

Against the real master serving ``tests.resilience.attack_app`` (its ``/attack/ws`` echo
never closes on its own):

- a peer that completes the handshake and then never answers pings is closed once a ping
  goes unanswered (``APP_WS_PING_INTERVAL_SECONDS`` + ``..._TIMEOUT_SECONDS``): close frame
  1011 "keepalive ping timeout", access line ``closed_by: "ping"``; negative control: with
  pings off the same peer stays open;
- a peer that reads nothing while the handler streams to it (``/attack/ws-flood``) is cut
  by the stalled-write deadline (``APP_BODY_TIMEOUT_SECONDS``); negative control: with a
  600 s deadline it stays connected although its pings went unanswered long before, as
  uvicorn's close after a ping timeout waits for a write buffer that never drains;
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
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.resilience.helpers import figure
from tests.support.server import GunicornServer, metric_value, wait_for

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


def silent_peer(port: int, path: str = "/attack/ws") -> socket.socket:
    """A raw WebSocket handshake, then nothing: no reads (until the test reads), no pongs."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a peer with no room
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
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


def read_until_closed(sock: socket.socket, limit: float) -> tuple[float | None, bytes]:
    """Seconds until the server ends the connection (reading everything it sends: ping
    frames, then a close frame or end-of-file; None if it is still open at ``limit``) and
    the bytes read."""
    start = time.monotonic()
    sock.settimeout(0.2)
    data = b""
    while time.monotonic() - start < limit:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - start, data
        if not chunk:
            return time.monotonic() - start, data
        data += chunk
    return None, data


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked frame a server sent."""
    out = []
    while len(data) >= 2:
        opcode, size, at = data[0] & 0x0F, data[1] & 0x7F, 2
        if size == 126:
            (size,), at = struct.unpack("!H", data[2:4]), 4
        elif size == 127:
            (size,), at = struct.unpack("!Q", data[2:10]), 10
        out.append((opcode, data[at : at + size]))
        data = data[at + size :]
    return out


def ws_lines(server: GunicornServer) -> list[dict]:
    return [e for e in server.json_logs() if e.get("event") == "websocket"]


def test_a_silent_peer_is_closed_when_a_ping_goes_unanswered() -> None:
    """The peer does read here (the kernel would buffer the pings anyway) but never
    answers: the unanswered ping closes it, with 1011 and uvicorn's reason, and the access
    line says the ping timeout ended it."""
    env = {"APP_WS_PING_INTERVAL_SECONDS": "1", "APP_WS_PING_TIMEOUT_SECONDS": "1"}
    with serving(env) as server, silent_peer(server.port) as sock:
        took, data = read_until_closed(sock, limit=30)
        lines = wait_for(lambda: ws_lines(server), timeout=30)
    shown = None if took is None else round(took, 2)
    figure("ws_silent_peer", ping_interval_s=1, ping_timeout_s=1, closed_after_s=shown)
    assert took is not None, "a peer that never answers pings was still open after 30 s"
    assert took >= 2 * 0.9  # one interval, then one timeout
    received = frames(data)
    assert [op for op, _ in received if op != 0x9] == [0x8], received  # pings, then close
    code, reason = struct.unpack("!H", received[-1][1][:2])[0], received[-1][1][2:]
    assert (code, reason) == (1011, b"keepalive ping timeout"), received[-1]
    assert (lines[-1]["close_code"], lines[-1]["closed_by"]) == (1011, "ping"), lines[-1]


def test_a_client_closing_with_the_ping_timeout_reason_is_the_client() -> None:
    """A client's close frame may carry the same 1011 and reason (the ``websockets`` client
    sends them when the *server* stops answering its pings): the access line says the
    client closed, not the server's ping timeout."""
    env = {"APP_WS_PING_INTERVAL_SECONDS": "20"}
    with serving(env) as server:
        with connect(f"ws://127.0.0.1:{server.port}/attack/ws", open_timeout=10) as ws:
            ws.close(1011, "keepalive ping timeout")
        lines = wait_for(lambda: ws_lines(server), timeout=30)
    assert (lines[-1]["close_code"], lines[-1]["closed_by"]) == (1011, "client"), lines[-1]


def test_control_without_pings_the_silent_peer_stays_open() -> None:
    env = {"APP_WS_PING_INTERVAL_SECONDS": "0", "APP_WS_IDLE_TIMEOUT_SECONDS": "600"}
    with serving(env) as server, silent_peer(server.port) as sock:
        took, _ = read_until_closed(sock, limit=4)
    assert took is None, f"closed after {took}s with pings off and a 600 s idle limit"


def ws_in_progress(server: GunicornServer) -> float:
    return metric_value(server.scrape(), "websocket_connections_in_progress")


def test_a_peer_that_reads_nothing_is_cut_at_the_write_deadline() -> None:
    """The handler streams 64 KiB messages; the peer reads none: once the socket buffers
    and the transport's are full, writes stay paused and the deadline aborts the
    connection; the handler's blocked ``send`` ends with a disconnect."""
    deadline = 2
    env = {"APP_BODY_TIMEOUT_SECONDS": str(deadline), "APP_WS_IDLE_TIMEOUT_SECONDS": "600"}
    with serving(env) as server, silent_peer(server.port, "/attack/ws-flood"):
        start = time.monotonic()
        wait_for(lambda: ws_in_progress(server) == 1, timeout=30)
        (line,) = wait_for(lambda: ws_lines(server), timeout=deadline + 60)
        took = time.monotonic() - start
        warned = [e for e in server.json_logs() if "not read by the peer" in e.get("event", "")]
        gauge = ws_in_progress(server)
    figure(
        "ws_peer_reading_nothing",
        write_deadline_s=deadline,
        closed_after_s=round(took, 2),
        session_ms=line["duration_ms"],
        messages_sent=line["messages_out"],
    )
    assert warned and warned[0]["level"] == "warning", warned
    assert line["close_code"] == 1006 and line["messages_out"] > 0, line
    assert line["duration_ms"] >= deadline * 1000 * 0.9, line  # not before the deadline
    assert gauge == 0


def test_control_with_a_lax_write_deadline_the_peer_stays_connected() -> None:
    """Pings every second with a 1 s timeout go unanswered, yet with a 600 s write
    deadline the peer is still connected well after: the ping timeout alone does not bound
    a peer that reads nothing (uvicorn's close waits for the buffer to drain)."""
    env = {
        "APP_BODY_TIMEOUT_SECONDS": "600",
        "APP_WS_PING_INTERVAL_SECONDS": "1",
        "APP_WS_PING_TIMEOUT_SECONDS": "1",
        "APP_WS_IDLE_TIMEOUT_SECONDS": "600",
    }
    with serving(env) as server, silent_peer(server.port, "/attack/ws-flood"):
        wait_for(lambda: ws_in_progress(server) == 1, timeout=30)
        threading.Event().wait(6)  # the window in which nothing may end it (3 ping rounds)
        assert ws_in_progress(server) == 1
        assert not ws_lines(server), ws_lines(server)


def test_a_peer_that_sends_nothing_is_closed_at_the_idle_limit() -> None:
    env = {"APP_WS_IDLE_TIMEOUT_SECONDS": "2", "APP_WS_PING_INTERVAL_SECONDS": "0.5"}
    with serving(env) as server:
        with connect(f"ws://127.0.0.1:{server.port}/attack/ws", open_timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(timeout=30) == "hello"
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
            assert ws.recv(timeout=30) == f"m{i}"
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
