"""The gunicorn worker class: ``uvicorn_worker.UvicornWorker`` plus the drain sequence.

Why a subclass: ``UvicornWorker`` offers no setting for uvicorn's ``server_header``,
``access_log``, ``timeout_graceful_shutdown`` or its HTTP protocol (here the httptools one
with a head-size cap, ``protocol.py``), and its SIGTERM handling closes the listener
at once. Kubernetes keeps routing to a pod for a few seconds after SIGTERM (endpoint removal
is asynchronous), so closing at once drops requests. The sequence here:

1. SIGTERM: ``/readyz`` answers 503 at once (``lifecycle.state.draining``);
2. requests keep being served for ``APP_SHUTDOWN_DELAY_SECONDS``;
3. then ``lifecycle.state.end_drain()`` (the platform closes its WebSockets with 1001) and
   uvicorn's graceful shutdown: listener closed, in-flight requests get up to
   ``APP_GRACEFUL_TIMEOUT_SECONDS`` to finish, lifespan shutdown flushes spans; exit.

Once a second ``on_tick`` also sweeps the connections for their deadlines (request head,
request body, stalled response writes, lingering closes: ``protocol.py``).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from types import FrameType
from typing import Any

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker as _BaseUvicornWorker

from app.platform import lifecycle
from app.platform.cors import RawCorsHeaders
from app.platform.protocol import LimitedHttpToolsProtocol
from app.platform.settings import get_settings

ACCEPT_GRACE_SECONDS = 0.1


class DrainingServer(Server):
    """A uvicorn ``Server`` whose SIGTERM starts a drain window before the real shutdown."""

    def __init__(self, *args: Any, shutdown_delay: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shutdown_delay = shutdown_delay
        self._drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._shutdown_delay > 0:
            # A repeated SIGTERM (a process-group kill reaches the worker directly and
            # again through the master) must not cut the drain window short.
            if self._drain_deadline is None and not self.should_exit:
                lifecycle.state.draining = True
                self._drain_deadline = time.monotonic() + self._shutdown_delay
            return
        lifecycle.state.draining = True
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, give just-accepted connections a moment to deliver their request,
        then uvicorn's graceful shutdown.

        Without the pause a worker recycled by ``max_requests`` resets the connections it
        accepted in its last loop iteration but has not read yet (about one failed request
        per recycle under load, measured in tests/resilience/test_soak.py); the other
        workers keep accepting from the shared listener meanwhile.
        """
        for server in self.servers:
            server.close()
        await asyncio.sleep(ACCEPT_GRACE_SECONDS)
        await super().shutdown(sockets)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_deadline is not None and time.monotonic() >= self._drain_deadline:
            self._drain_deadline = None
            # The platform closes its WebSockets (1001) first: uvicorn's shutdown would
            # otherwise wait for them for the whole graceful timeout.
            lifecycle.state.end_drain()
            super().handle_exit(signal.SIGTERM, None)
        if counter % 10 == 0:  # once a second (a tick is 0.1 s): the deadline sweep
            now = asyncio.get_running_loop().time()  # head, body, stalled write, linger
            for connection in list(self.server_state.connections):
                if isinstance(connection, LimitedHttpToolsProtocol):
                    connection.sweep(now)
        return await super().on_tick(counter)


class UvicornWorker(_BaseUvicornWorker):
    """``uvicorn_worker.UvicornWorker`` with no Server header and the drain sequence."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = get_settings()
        LimitedHttpToolsProtocol.max_head_bytes = settings.max_header_bytes
        LimitedHttpToolsProtocol.head_timeout = settings.header_timeout_seconds
        LimitedHttpToolsProtocol.body_timeout = settings.body_timeout_seconds
        LimitedHttpToolsProtocol.cors = RawCorsHeaders(settings) if settings.cors_enabled else None
        self.CONFIG_KWARGS = {
            **_BaseUvicornWorker.CONFIG_KWARGS,
            "http": LimitedHttpToolsProtocol,
            "server_header": False,
            "access_log": False,  # the middleware writes the one access line
            "timeout_graceful_shutdown": settings.graceful_timeout_seconds,
            "proxy_headers": True,
            # A silent WebSocket peer is closed when a ping goes unanswered (0: no pings).
            "ws_ping_interval": settings.ws_ping_interval_seconds or None,
            "ws_ping_timeout": settings.ws_ping_timeout_seconds,
        }
        self._shutdown_delay = settings.shutdown_delay_seconds
        super().__init__(*args, **kwargs)

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config, shutdown_delay=self._shutdown_delay)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
