"""Issue 16: a client that goes away mid-request frees everything it held.

1,000 requests are abandoned in the ways clients really abandon them: a raw socket that
sends a request and closes (FIN) while the handler runs, one that resets (RST, SO_LINGER 0),
an upload that stops half-way and closes, an httpx client whose read timeout fires, an
http.client connection closed before reading. Then, on the real gunicorn master:

- the in-progress gauge on the master's metrics port is back to 0;
- each abandoned request has exactly one access line, status 499 (client closed request);
- the worker's open file descriptors are back to where they were (no socket leaked);
- the worker's asyncio tasks are back to their count before (no handler, body reader or
  timer task left behind), read from the attack app's ``GET /attack/tasks``;
- every concurrency slot is free: as many concurrent slow requests as the limit allows are
  all served (a leaked slot would turn one of them into a 503), and a normal request too.
"""

from __future__ import annotations

import http.client
import os
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.resilience.helpers import figure
from tests.support.server import GunicornServer, metric_value, running_server, wait_for

# APP_MAX_CONCURRENT_REQUESTS of the one worker: well above the ~17 requests the abandoning
# threads keep in their handlers at once on a quiet machine, so a loaded one (handlers
# slower, more of them at a time) still sheds few with 503.
LIMIT = 64
APP = "tests.resilience.attack_app:app"  # the team's routes and GET /attack/tasks
ABANDONED = 1000
THREADS = 4


@pytest.fixture(scope="module")
def server() -> Iterator[GunicornServer]:
    env = {"APP_MAX_CONCURRENT_REQUESTS": str(LIMIT)}
    with running_server(env, workers=1, app=APP) as srv:
        yield srv


def tasks(server: GunicornServer) -> int:
    """The worker's count of asyncio tasks, this request's own included (as every time)."""
    return httpx.get(f"{server.base_url}/attack/tasks", timeout=30).json()["tasks"]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def wait_request(rid: str) -> bytes:
    return f"GET /team/v1/wait?ms=50 HTTP/1.1\r\nHost: t\r\nX-Request-ID: {rid}\r\n\r\n".encode()


def fin_mid_handler(port: int, rid: str) -> None:
    """The request arrives whole; the client closes while the handler awaits."""
    with connect(port) as sock:
        sock.sendall(wait_request(rid))


def rst_mid_handler(port: int, rid: str) -> None:
    sock = connect(port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.sendall(wait_request(rid))
    sock.close()  # SO_LINGER 0: a reset instead of a FIN


def half_upload(port: int, rid: str) -> None:
    """The body stops half-way and the client closes."""
    with connect(port) as sock:
        sock.sendall(
            b"POST /team/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b'X-Request-ID: %s\r\nContent-Length: 1000\r\n\r\n{"message": "'
            % rid.encode()
            + b"a" * 400
        )


def httpx_read_timeout(port: int, rid: str) -> None:
    try:
        response = httpx.get(
            f"http://127.0.0.1:{port}/team/v1/wait",
            params={"ms": 300},
            headers={"X-Request-ID": rid},
            timeout=httpx.Timeout(5, read=0.02),
        )
    except httpx.ReadTimeout:
        return
    # Answered in time: only a shed request can be (every slot was taken when it came).
    assert response.status_code == 503, response.status_code


def http_client_close_unread(port: int, rid: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/team/v1/wait?ms=50", headers={"X-Request-ID": rid})
    conn.close()  # before reading the response


KINDS = (
    fin_mid_handler,
    rst_mid_handler,
    half_upload,
    httpx_read_timeout,
    http_client_close_unread,
)


@pytest.mark.slow
def test_abandoned_requests_free_everything(server: GunicornServer) -> None:
    (worker,) = server.worker_pids()
    assert httpx.get(f"{server.base_url}/team/v1/hello", timeout=30).status_code == 200
    fds_before = open_fds(worker)
    tasks_before = tasks(server)
    ids = {f"gone-{i}": KINDS[i % len(KINDS)] for i in range(ABANDONED)}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def abandon(item: tuple[str, object]) -> None:
        rid, kind = item
        try:
            kind(server.port, rid)  # type: ignore[operator]
        except BaseException as exc:  # collected: the assertion below names it
            with lock:
                errors.append(exc)

    start = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(abandon, ids.items()))
    abandon_seconds = time.monotonic() - start
    assert not errors, errors[:3]

    # The gauge on the master's metrics port: every abandoned request has finished.
    def gauge() -> float:
        return metric_value(server.scrape(), "http_requests_in_progress")

    wait_for(lambda: gauge() == 0, timeout=30, interval=0.2)

    def lines_by_id() -> dict[str, list[dict]] | None:
        found: dict[str, list[dict]] = {}
        for line in server.access_logs():
            if line.get("request_id") in ids:
                found.setdefault(line["request_id"], []).append(line)
        return found if len(found) == len(ids) else None

    try:
        found = wait_for(lines_by_id, timeout=30, interval=0.5)
    except TimeoutError:
        found = {}
        for line in server.access_logs():
            if line.get("request_id") in ids:
                found.setdefault(line["request_id"], []).append(line)
    statuses = Counter((ids[rid].__name__, lines[0]["status"]) for rid, lines in found.items())
    figure(
        "disconnects",
        abandoned=ABANDONED,
        seconds=round(abandon_seconds, 1),
        access_lines=sum(len(v) for v in found.values()),
        **{f"{kind}_{status}": n for (kind, status), n in sorted(statuses.items())},
    )
    assert len(found) == len(ids), f"{len(ids) - len(found)} abandoned requests have no line"
    assert all(len(lines) == 1 for lines in found.values())
    # 499 (client closed request); a 503 only if its slot was already taken when it came;
    # a 200 only where the response was complete before the worker's loop saw the close (a
    # stalled loop runs the handler's 50 ms timer before it polls the socket): rare, and a
    # missed disconnect would show as many, which the 90% below catches.
    wrong = {k: n for k, n in statuses.items() if k[1] not in (499, 503, 200)}
    assert not wrong, wrong
    assert sum(n for (_, status), n in statuses.items() if status == 200) <= ABANDONED * 0.01
    assert sum(n for (_, status), n in statuses.items() if status == 499) >= ABANDONED * 0.9

    # No socket leaked, no task left behind.
    wait_for(lambda: open_fds(worker) <= fds_before, timeout=30, interval=0.2)

    def tasks_settled() -> int | None:
        count = tasks(server)  # never 0: the request asking is a task
        return count if count <= tasks_before else None

    tasks_after = wait_for(tasks_settled, timeout=30)
    figure("disconnects_leaks", tasks_before=tasks_before, tasks_after=tasks_after)

    # Every slot free: LIMIT concurrent slow requests all served.
    with ThreadPoolExecutor(LIMIT) as pool:
        codes = list(
            pool.map(
                lambda _: (
                    httpx.get(
                        f"{server.base_url}/team/v1/wait", params={"ms": 500}, timeout=30
                    ).status_code
                ),
                range(LIMIT),
            )
        )
    assert codes == [200] * LIMIT, Counter(codes)
    assert httpx.get(f"{server.base_url}/team/v1/hello", timeout=30).status_code == 200
    assert gauge() == 0
