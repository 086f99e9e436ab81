"""The team's resources: a Redis client and an instrumented HTTP client, opened by the lifespan.

``TEAM_REDIS_URL`` and ``TEAM_UPSTREAM_URL`` are the team's own settings (not ``APP_*``).
Without ``TEAM_REDIS_URL`` no Redis client is opened and its readiness check is not
registered, so the app also runs where no Redis is at hand.
"""

from __future__ import annotations

import os
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
        await store.ping()  # fail start-up, not the first request, on a wrong URL
    http = httpx.AsyncClient(base_url=os.environ.get("TEAM_UPSTREAM_URL", "http://127.0.0.1:9"))
    HTTPXClientInstrumentor().instrument_client(http)
    log.info("team resources opened", redis=bool(store))
    try:
        yield {"redis": store, "http": http}
    finally:
        await http.aclose()
        if store is not None:
            await store.aclose()
        log.info("team resources released")


async def redis_ready() -> None:
    """Readiness: a PING to the team's Redis on its own short-lived connection."""
    client = redis.from_url(os.environ["TEAM_REDIS_URL"])
    try:
        await client.ping()
    finally:
        await client.aclose()


def readiness_checks() -> dict[str, Any]:
    return {"redis": redis_ready} if os.environ.get("TEAM_REDIS_URL") else {}
