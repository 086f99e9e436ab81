"""The team's own outer middleware: a pure ASGI layer outside the platform.

``TEAM_EDGE_HEADER`` (the team's own setting) turns it on: every HTTP response then carries
``X-Team-Edge: <value>``, the platform's own answers too (a probe, a 503 when shedding, a
413 for a body too large, a 404), because ``create_app(middleware=...)`` runs it outside the
platform layer. Off by default, so the platform's other tests see the plain stack.
"""

from __future__ import annotations

import os

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-team-edge"


class EdgeHeader:
    def __init__(self, app: ASGIApp, value: str) -> None:
        self.app = app
        self.value = value.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (HEADER, self.value)]
            await send(message)

        await self.app(scope, receive, stamped)


def middleware() -> list[Middleware]:
    value = os.environ.get("TEAM_EDGE_HEADER")
    return [Middleware(EdgeHeader, value=value)] if value else []
