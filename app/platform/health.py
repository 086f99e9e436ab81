"""``/livez`` and ``/readyz`` with a small registry of async readiness checks.

Liveness only proves the event loop runs: it never checks dependencies, so a slow database
cannot make Kubernetes restart every pod at once. Readiness runs each registered check with
a timeout and caches the combined result for ``APP_READINESS_CACHE_SECONDS`` so a storm of
probes cannot overload a dependency. It is 503 until lifespan start-up completes and from
the moment SIGTERM arrives (see ``worker.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from app.platform import lifecycle
from app.platform.errors import problem_response

Check = Callable[[], Awaitable[None]]
PROBE_PATHS = frozenset({"/livez", "/readyz"})


@dataclass
class ReadinessRegistry:
    """Named async checks; a check passes by returning and fails by raising."""

    timeout: float = 2.0
    cache_seconds: float = 1.0
    checks: dict[str, Check] = field(default_factory=dict)
    _cached: tuple[float, bool, dict[str, str]] | None = None
    _lock: asyncio.Lock | None = None

    def register(self, name: str, check: Check) -> None:
        self.checks[name] = check
        self._cached = None

    async def _run_one(self, check: Check) -> str:
        try:
            await asyncio.wait_for(check(), self.timeout)
        except TimeoutError:
            return f"fail: timed out after {self.timeout:g}s"
        except Exception as exc:  # a check may fail any way it likes
            return f"fail: {type(exc).__name__}"
        return "ok"

    async def run(self) -> tuple[bool, dict[str, str]]:
        """Run all checks concurrently, at most once per cache window."""
        now = time.monotonic()
        cached = self._cached
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1], cached[2]
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # concurrent probes share one run
            cached = self._cached
            if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
                return cached[1], cached[2]
            names = list(self.checks)
            results = await asyncio.gather(*(self._run_one(self.checks[n]) for n in names))
            outcome = dict(zip(names, results, strict=True))
            ok = all(r == "ok" for r in results)
            self._cached = (time.monotonic(), ok, outcome)
            return ok, outcome


class Probes:
    """``/livez`` and ``/readyz`` as one plain ASGI app, outside the API's routing.

    ``PlatformMiddleware`` hands it the requests whose path is exactly a probe path, so
    probes answer whatever routes a team declares (a catch-all route cannot shadow them),
    and the API's route table holds only the API: FastAPI tries routes in order, and the
    two probe routes in front cost every API request a few microseconds (README,
    "Performance"). GET and HEAD only, as the routes were; other methods get the same 405
    problem document FastAPI's routing gave.
    """

    def __init__(self, registry: ReadinessRegistry) -> None:
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            response = problem_response(405, "Method Not Allowed", headers={"Allow": "GET, HEAD"})
        elif scope["path"] == "/livez":
            response = JSONResponse({"status": "ok"})
        else:
            response = await self.readyz()
        await response(scope, receive, send)

    async def readyz(self) -> Response:
        state = lifecycle.state
        if state.draining:
            return _not_ready("draining: shutdown in progress", {"shutdown": "draining"})
        if not state.started:
            return _not_ready("starting: lifespan start-up not complete", {"startup": "pending"})
        ok, checks = await self.registry.run()
        if not ok:
            failed = ", ".join(sorted(n for n, r in checks.items() if r != "ok"))
            return _not_ready(f"failing checks: {failed}", checks)
        return JSONResponse({"status": "ok", "checks": checks})


def _not_ready(detail: str, checks: dict[str, str]) -> Response:
    return problem_response(503, detail, extra={"checks": checks})
