"""CORS from ``APP_CORS_*``: the one policy for the app's answers and the socket's own.

Most answers, the platform's 503/413/500 included, get their headers from Starlette's
``CORSMiddleware``, placed outermost by ``create_app`` (:func:`cors_middleware`). Two
answers never reach the app: the 431 for an oversized head and the 408 for a head that
never completed, written by the HTTP protocol itself (``protocol.py``). Without CORS headers
a browser reports those as a network failure instead of their status, so the protocol
adds the headers :class:`RawCorsHeaders` gives for the request's ``Origin``, by the same
rules as the middleware's simple responses: ``*`` when every origin is allowed without
credentials, else the origin echoed with ``Vary: Origin`` when it is allowed.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from app.platform.settings import Settings


def cors_middleware(settings: Settings) -> list[Middleware]:
    """Starlette's CORSMiddleware from ``APP_CORS_*``; none while no origin is allowed."""
    if not settings.cors_enabled:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=settings.cors_allow_methods,
            allow_headers=settings.cors_allow_headers,
            expose_headers=settings.cors_expose_headers,
            allow_credentials=settings.cors_allow_credentials,
            max_age=settings.cors_max_age_seconds,
        )
    ]


class RawCorsHeaders:
    """The CORS header lines (raw HTTP/1.1 bytes) for a response written by the protocol."""

    def __init__(self, settings: Settings) -> None:
        origins = settings.cors_allow_origins
        self._any = "*" in origins
        self._allowed = frozenset(o.encode("latin-1") for o in origins if o != "*")
        common = b""
        if settings.cors_allow_credentials:
            common += b"access-control-allow-credentials: true\r\n"
        if settings.cors_expose_headers:
            exposed = ", ".join(settings.cors_expose_headers).encode("latin-1")
            common += b"access-control-expose-headers: " + exposed + b"\r\n"
        self._common = common  # settings refuse "*" with credentials: never both

    def __call__(self, origin: bytes | None) -> bytes:
        """Header lines for a request from ``origin`` (b"" when it gets none)."""
        if origin is None:
            return b""
        if self._any:
            return b"access-control-allow-origin: *\r\n" + self._common
        if origin in self._allowed:
            echoed = b"access-control-allow-origin: " + origin + b"\r\nvary: Origin\r\n"
            return echoed + self._common
        return b""
