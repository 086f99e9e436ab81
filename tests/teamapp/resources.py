"""The team's resources: a Redis client and an instrumented HTTP client, opened by the lifespan.

``TEAM_REDIS_URL`` and ``TEAM_UPSTREAM_URL`` are the team's own settings (not ``APP_*``).
Without ``TEAM_REDIS_URL`` no Redis client is opened and its readiness check is not
registered, so the app also runs where no Redis is at hand. ``TEAM_REDIS_WAIT_SECONDS``
(default 0) is how long start-up waits for a Redis that does not answer yet (a pod started
before its database), retrying every 0.1 s; past it, start-up fails.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis.asyncio as redis
from fastapi import FastAPI
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from app.platform.logging import get_logger

log = get_logger("team.resources")


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """Open the team's clients before readiness can pass; close them after the drain."""
    url = os.environ.get("TEAM_REDIS_URL")
    store = redis.from_url(url) if url else None
    if store is not None:
        await _wait_for(store, float(os.environ.get("TEAM_REDIS_WAIT_SECONDS", "0")))
    http = httpx.AsyncClient(base_url=os.environ.get("TEAM_UPSTREAM_URL", "http://127.0.0.1:9"))
    HTTPXClientInstrumentor().instrument_client(http)
    log.info("team resources opened", redis=bool(store), pid=os.getpid())
    try:
        yield {"redis": store, "http": http}
    finally:
        await http.aclose()
        if store is not None:
            await store.aclose()
        log.info("team resources released")


async def _wait_for(store: redis.Redis, seconds: float) -> None:
    """PING until Redis answers: fail start-up, not the first request, on a wrong URL."""
    deadline = time.monotonic() + seconds
    for attempt in itertools.count():
        try:
            await store.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() >= deadline:
                raise
            if attempt == 0:
                log.info("waiting for redis", pid=os.getpid())
            await asyncio.sleep(0.1)


async def redis_ready() -> None:
    """Readiness: a PING to the team's Redis on its own short-lived connection."""
    client = redis.from_url(os.environ["TEAM_REDIS_URL"])
    try:
        await client.ping()
    finally:
        await client.aclose()


def readiness_checks() -> dict[str, Any]:
    return {"redis": redis_ready} if os.environ.get("TEAM_REDIS_URL") else {}
