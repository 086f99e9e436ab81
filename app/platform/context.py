"""Per-request context shared by the middleware, the error handlers and the log processors.

A single ``ContextVar`` holding the request id is the cheapest way to let any log line
written while serving a request carry it (one ``set`` per request, no dict copies).
"""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
