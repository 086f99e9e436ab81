"""Issue 16: a response sent before the request body was read reaches the client.

The clients are the ones people use (urllib, http.client, httpx, raw sockets), each sending
its whole body first and reading the response after, as simple clients do. Early answers:
413 from ``Content-Length`` alone, 431 for a huge head, and an application route that
answers without reading the body (``POST /team/v1/background`` reads none). With a plain
close the unread body left in the kernel buffer makes the kernel reset the connection,
which destroys the answer on the client's side; the negative controls run the same clients
against a server whose lingering close is replaced by that plain close
(``ATTACK_PLAIN_CLOSE=1``, ``tests/resilience/attack_app.py``) and see the failures. With
the lingering close (``app/platform/protocol.py``) every answer arrives, with
``Connection: close``; the linger itself is bounded in time and size.

A 503 is never early: a request with a body is only admitted, or shed, once its body is in
(the starvation defence), so the 503 test checks that the shed answer arrives after an
upload, not a lingering close.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from app.platform.protocol import LINGER_IDLE_SECONDS, LINGER_MAX_BYTES
from tests.resilience.helpers import figure, server_socket_open
from tests.support.server import GunicornServer, running_server, wait_for

TRIES = 200
BIG = json.dumps({"message": "x" * (2 * 1024 * 1024)}).encode()  # 2 MiB, limit is 1 MiB
SWEEP = 1.0
APP = "tests.resilience.attack_app:app"  # the team's routes, and the plain-close switch
UNREAD = b"u" * (4 * 1024 * 1024)  # under ROOMY's limit: the app answers before reading it
ROOMY = {"APP_MAX_BODY_BYTES": str(8 * 1024 * 1024)}
CONTROL_TRIES = 50


@pytest.fixture(scope="module")
def server() -> Iterator[GunicornServer]:
    with running_server(workers=2, app=APP) as srv:
        yield srv


@pytest.fixture(scope="module")
def roomy() -> Iterator[GunicornServer]:
    """The service with an 8 MiB body limit: 4 MiB bodies reach the application."""
    with running_server(ROOMY, workers=2, app=APP) as srv:
        yield srv


# The negative controls: an early response closes at once, as uvicorn's does.
PLAIN_CLOSE = {"ATTACK_PLAIN_CLOSE": "1"}


@pytest.fixture(scope="module")
def plain_close() -> Iterator[GunicornServer]:
    """As ``server`` (1 MiB limit), with a plain close."""
    with running_server(PLAIN_CLOSE, workers=2, app=APP) as srv:
        yield srv


@pytest.fixture(scope="module")
def roomy_plain_close() -> Iterator[GunicornServer]:
    """As ``roomy``, with a plain close."""
    with running_server({**ROOMY, **PLAIN_CLOSE}, workers=2, app=APP) as srv:
        yield srv


def outcome(call) -> str:
    """The status the client saw, or the name of the exception it got instead."""
    try:
        return str(call())
    except urllib.error.HTTPError as exc:
        return str(exc.code)
    except urllib.error.URLError as exc:
        return type(exc.reason).__name__
    except (OSError, http.client.HTTPException, httpx.HTTPError) as exc:
        return type(exc).__name__


def urllib_post(base: str) -> int:
    request = urllib.request.Request(
        f"{base}/team/v1/echo", data=BIG, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def tally(
    name: str, results: list[str], expected: str | None = None, key: str | None = None
) -> Counter[str]:
    """Record the outcomes; ``key`` (default ``not_<expected>``) names the count of the
    tries that did not get ``expected``."""
    counts = Counter(results)
    extra = {}
    if expected is not None:
        extra[key or f"not_{expected}"] = len(results) - counts[expected]
    figure(f"early_response_{name}", tries=len(results), **dict(counts), **extra)
    return counts


def test_urllib_gets_every_413_for_a_2mib_body(server: GunicornServer) -> None:
    """The issue's target: 200 of 200 get their 413, no reset, no broken pipe."""
    results = [outcome(lambda: urllib_post(server.base_url)) for _ in range(TRIES)]
    counts = tally("urllib", results, "413", key="resets_or_errors")  # the target
    assert counts == Counter({"413": TRIES}), counts


def test_control_with_a_plain_close_urllib_loses_413s(plain_close: GunicornServer) -> None:
    """The same uploads against a plain close: some answers are destroyed by the reset,
    so the test above fails without the lingering close."""
    results = [outcome(lambda: urllib_post(plain_close.base_url)) for _ in range(CONTROL_TRIES)]
    counts = tally("urllib_plain_close_control", results, "413")
    assert counts["413"] < CONTROL_TRIES, counts
    assert set(counts) - {"413"} <= {"ConnectionResetError", "BrokenPipeError"}, counts


def post_unread(base: str, client: str) -> int:
    """``POST /team/v1/background`` with a 4 MiB body it never reads, whole body first."""
    url, headers = f"{base}/team/v1/background", {"Content-Type": "application/octet-stream"}
    if client == "urllib":
        request = urllib.request.Request(url, data=UNREAD, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["connection"].lower() == "close"
            assert json.loads(response.read()) == {"queued": True}
            return response.status
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/team/v1/background", UNREAD, headers)
        response = conn.getresponse()
        assert response.getheader("connection", "").lower() == "close"
        assert json.loads(response.read()) == {"queued": True}
        return response.status
    finally:
        conn.close()


@pytest.mark.parametrize("client", ["urllib", "http.client"])
def test_an_app_answer_before_the_body_is_read_reaches_the_client(
    roomy: GunicornServer, client: str
) -> None:
    """A route that answers at once, its 4 MiB body unread: the 200 arrives every time,
    with ``Connection: close`` (the rest of the body is drained by the lingering close)."""
    results = [outcome(lambda: post_unread(roomy.base_url, client)) for _ in range(100)]
    counts = tally(f"app_answer_unread_body_{client}", results, "200")
    assert counts == Counter({"200": 100}), counts


def test_control_with_a_plain_close_app_answers_are_lost(
    roomy_plain_close: GunicornServer,
) -> None:
    base = roomy_plain_close.base_url
    results = [outcome(lambda: post_unread(base, "urllib")) for _ in range(CONTROL_TRIES)]
    counts = tally("app_answer_unread_body_plain_close_control", results, "200")
    assert counts["200"] < CONTROL_TRIES, counts


def test_http_client_keep_alive_gets_413_with_connection_close(server: GunicornServer) -> None:
    """http.client speaks keep-alive: the early 413 must still say ``Connection: close``
    and arrive whole; the next request on a new connection is served."""
    results = []
    for _ in range(50):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:

            def call(conn: http.client.HTTPConnection = conn) -> int:
                conn.request("POST", "/team/v1/echo", BIG, {"Content-Type": "application/json"})
                response = conn.getresponse()
                body = json.loads(response.read())
                assert response.getheader("connection", "").lower() == "close"
                assert body["status"] == 413 and body["request_id"]
                return response.status

            results.append(outcome(call))
        finally:
            conn.close()
    counts = tally("http_client", results)
    assert counts == Counter({"413": 50}), counts


def test_httpx_gets_every_413(server: GunicornServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        results = [
            outcome(
                lambda: (
                    client.post(
                        "/team/v1/echo", content=BIG, headers={"Content-Type": "application/json"}
                    ).status_code
                )
            )
            for _ in range(50)
        ]
        counts = tally("httpx", results)
        # The keep-alive pool then opens a fresh connection: still served.
        assert client.get("/team/v1/hello").status_code == 200
    assert counts == Counter({"413": 50}), counts


def raw_upload(port: int, head: bytes, body: bytes) -> bytes:
    """Send a whole request, then read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_raw_socket_gets_413_then_end_of_file(server: GunicornServer) -> None:
    head = (
        b"POST /team/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(BIG)
    )
    results = []
    for _ in range(50):
        try:
            data = raw_upload(server.port, head, BIG)
        except OSError as exc:
            results.append(type(exc).__name__)
            continue
        results.append(data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1") else "?")
        assert b"\r\nconnection: close\r\n" in data.lower(), data[:400]
    counts = tally("raw_413", results)
    assert counts == Counter({"413": 50}), counts


def test_431_for_a_huge_head_with_a_body_reaches_the_client(server: GunicornServer) -> None:
    head = (
        b"POST /team/v1/echo HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 100_000 + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % len(BIG)
    )
    results = []
    for _ in range(30):
        try:
            data = raw_upload(server.port, head, BIG)
        except OSError as exc:
            results.append(type(exc).__name__)
            continue
        results.append(data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1") else "?")
    counts = tally("raw_431", results)
    assert counts == Counter({"431": 30}), counts


def test_503_shed_after_the_upload_reaches_the_client() -> None:
    """With the one slot taken by slow requests, an upload is answered 503 (``Retry-After``)
    once its body is in, and that answer arrives. Not an early answer: on a keep-alive
    connection it does not say ``Connection: close``."""
    with running_server({"APP_MAX_CONCURRENT_REQUESTS": "1"}, workers=1, app=APP) as srv:
        stop = threading.Event()

        def occupy() -> None:
            with httpx.Client(base_url=srv.base_url, timeout=30) as client:
                while not stop.is_set():
                    if client.get("/team/v1/wait", params={"ms": 3000}).status_code != 200:
                        stop.wait(0.05)  # shed: the other holder has the slot; no busy loop

        holders = [threading.Thread(target=occupy, daemon=True) for _ in range(2)]
        for holder in holders:
            holder.start()
        body = json.dumps({"message": "y" * 900}).encode() * 600  # ~550 KiB, under the limit
        try:
            wait_for(
                lambda: httpx.get(f"{srv.base_url}/team/v1/hello", timeout=30).status_code == 503,
                timeout=30,
            )
            results = []
            for _ in range(50):
                request = urllib.request.Request(
                    f"{srv.base_url}/team/v1/echo",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                results.append(
                    outcome(lambda r=request: urllib.request.urlopen(r, timeout=30).status)
                )
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            try:
                conn.request("POST", "/team/v1/echo", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                keep_alive_status = response.status
                connection_header = response.getheader("connection")
            finally:
                conn.close()
        finally:
            stop.set()
            for holder in holders:
                holder.join(35)
    counts = tally("urllib_503", results)
    # 503 (shed) or, between two waits, 422 (the body is served: not valid echo input).
    assert set(counts) <= {"503", "422"} and counts["503"] >= 40, counts
    if keep_alive_status == 503:
        assert connection_header is None, connection_header


def test_linger_ends_when_the_client_goes_quiet(server: GunicornServer) -> None:
    """A client that sends part of an oversized body and then nothing: it gets its 413 and
    end-of-file while the server still lingers, and the server closes its socket once the
    client has been quiet for the idle bound (not before)."""
    head = b"POST /team/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(BIG)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(head + BIG[:300_000])
        quiet_since = time.monotonic()  # from here on the client sends nothing
        data = b""
        while chunk := sock.recv(65536):  # the response, then end-of-file (write_eof)
            data += chunk
        eof_after = time.monotonic() - quiet_since
        # The end of the response did not wait for the linger: the server still holds it.
        lingering_at_eof = server_socket_open(server.port, client_port)
        wait_for(
            lambda: not server_socket_open(server.port, client_port),
            timeout=LINGER_IDLE_SECONDS + SWEEP + 60,
            interval=0.1,
        )
        closed_after = time.monotonic() - quiet_since
        # Closed: the next write is answered by a reset, and a write after it fails.
        refused = wait_for(lambda: write_fails(sock), timeout=30)
    assert data.startswith(b"HTTP/1.1 413 "), data[:200]
    figure(
        "linger_quiet_client",
        eof_after_s=round(eof_after, 3),
        closed_after_s=round(closed_after, 2),
        idle_bound_s=LINGER_IDLE_SECONDS,
        write_refused_with=refused,
    )
    assert lingering_at_eof, "the response's end waited for the server to close"
    assert closed_after >= LINGER_IDLE_SECONDS * 0.9  # not before the idle bound


def write_fails(sock: socket.socket) -> str | None:
    try:
        sock.sendall(b"z")
    except OSError as exc:
        return type(exc).__name__
    return None


def test_linger_stops_discarding_past_its_byte_cap(server: GunicornServer) -> None:
    """A client that streams an endless body after its 413 is cut once the cap is passed."""
    head = b"POST /team/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999999\r\n\r\n"
    sent = 0
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head)
        try:
            while sent < LINGER_MAX_BYTES * 4:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # reset or broken pipe: the server stopped discarding
    figure("linger_byte_cap", cap=LINGER_MAX_BYTES, sent_before_cut=sent)
    assert LINGER_MAX_BYTES * 0.9 <= sent < LINGER_MAX_BYTES * 4
    assert httpx.get(f"{server.base_url}/team/v1/hello", timeout=30).status_code == 200


def test_linger_lasts_while_the_client_keeps_sending(server: GunicornServer) -> None:
    """A slow uploader past its 413: the server keeps discarding for longer than the idle
    bound and the keep-alive timeout (5 s each), as long as bytes keep coming, so the
    client never meets a reset while it is still writing."""
    head = b"POST /team/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(BIG)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + BIG[:100_000])
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < LINGER_IDLE_SECONDS + 3:
            sock.sendall(BIG[:1000])  # raises on a reset
            sent += 1
            time.sleep(0.5)  # the uploader's pace is the behaviour under test
        sock.shutdown(socket.SHUT_WR)  # done sending: now read the answer
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    figure(
        "linger_slow_uploader", writes_after_413=sent, seconds=round(time.monotonic() - start, 1)
    )
    assert data.startswith(b"HTTP/1.1 413 "), data[:200]
