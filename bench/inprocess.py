"""Hardened vs bare FastAPI through uvicorn's real HTTP protocol, in one process.

    .venv/bin/python bench/inprocess.py [--route hello|orders] [--rounds 30] [--requests 800]
                                        [--ratio 0.1]

No sockets and no wrk: each app is served by the worker's own protocol class
(``LimitedHttpToolsProtocol``, httptools parser, uvicorn's response writer) on 16
connections with a fake transport, the requests of a round in flight together as under
load. Rounds alternate between the apps; the figure is CPU time per request (process time,
so the exporter thread counts), best round of each. Less noisy than ``make bench`` on a
shared machine, and it leaves out what both servers pay alike (syscalls, wrk), so its ratio
is lower than the one ``make bench`` prints; use it to compare changes side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HELLO = b"GET /api/v1/hello?name=bench HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"
_ORDER = b'{"sku":"sku-42","quantity":3,"unit_price":9.5,"note":"leave at the door"}'


def _order_request(uid: int) -> bytes:
    return (
        b"POST /shop/v1/users/%d/orders HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    ) % (uid, len(_ORDER), _ORDER)


CONNECTIONS = 16


class _Transport(asyncio.Transport):
    """Counts writes; a response is the status+headers write and the body write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.waiter: asyncio.Future[None] | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        peers = {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5555)}
        return peers.get(name, default)

    def write(self, data: Any) -> None:
        self.writes += 1
        if self.writes % 2 == 0 and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _lifespan(app: Any) -> tuple[asyncio.Queue[dict[str, str]], asyncio.Future[Any]]:
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        started.set()

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.ensure_future(app(scope, queue.get, send))
    await started.wait()
    return queue, task


def _connections(app: Any) -> list[tuple[Any, _Transport]]:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from app.platform.protocol import LimitedHttpToolsProtocol

    out = []
    for _ in range(CONNECTIONS):
        config = Config(
            app=app,
            http=LimitedHttpToolsProtocol,
            server_header=False,
            access_log=False,
            proxy_headers=True,
            lifespan="off",
            log_config=None,
        )
        config.load()
        protocol = LimitedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
        transport = _Transport()
        protocol.connection_made(transport)
        out.append((protocol, transport))
    return out


async def _measure(
    apps: dict[str, Any], request_of: Callable[[int], bytes], rounds: int, requests: int
) -> dict[str, float]:
    lifespans = [await _lifespan(app) for app in apps.values()]
    gc.collect()
    gc.freeze()  # as the workers do (post_worker_init)
    served = {name: _connections(app) for name, app in apps.items()}
    loop = asyncio.get_running_loop()
    best = dict.fromkeys(apps, float("inf"))
    batches = max(1, requests // CONNECTIONS)
    sent = 0
    for _ in range(rounds):
        for name, connections in served.items():
            start = time.process_time()
            for _ in range(batches):
                waiters = []
                for protocol, transport in connections:
                    transport.waiter = loop.create_future()
                    waiters.append(transport.waiter)
                    sent += 1
                    protocol.data_received(request_of(sent))
                for waiter in waiters:
                    await waiter
            per_request = (time.process_time() - start) / (batches * CONNECTIONS) * 1e6
            best[name] = min(best[name], per_request)
    for queue, task in lifespans:
        await queue.put({"type": "lifespan.shutdown"})
        await task
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", choices=("hello", "orders"), default="hello")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--requests", type=int, default=800, help="per app per round")
    parser.add_argument("--ratio", default="0.1", help="trace sampling ratio of the hardened app")
    args = parser.parse_args()

    from bench.apps import hardened_tracing_env
    from tests.support.otlp import OtlpReceiver

    sink = OtlpReceiver(defer_decode=True).start()
    os.environ.update(hardened_tracing_env(sink.endpoint, "bench-inprocess", args.ratio))
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bench-metrics-"))
    stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # the access lines
    try:
        import uvloop

        if args.route == "hello":
            from app.main import app as hardened
            from bench.apps import bare

            def request_of(n: int) -> bytes:
                return HELLO
        else:
            from bench.apps import orders_bare as bare
            from bench.apps import orders_hardened as hardened

            request_of = _order_request  # a new user id each request, as make bench's wrk script
        apps = {"bare": bare, "hardened": hardened}
        best = uvloop.run(_measure(apps, request_of, args.rounds, args.requests))
    finally:
        sys.stdout.close()
        sys.stdout = stdout
        sink.stop()
    print(
        f"{args.route}: CPU per request, best of {args.rounds} rounds, {CONNECTIONS} connections:"
    )
    for name, value in best.items():
        print(f"  {name:9} {value:7.1f} us")
    print(f"  platform  {best['hardened'] - best['bare']:7.1f} us")
    print(f"bare / hardened = {best['bare'] / best['hardened']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
