"""Service settings, read once from ``APP_*`` environment variables.

A bad value must stop the process before it binds any port, with one line naming the
setting: :func:`load_settings_or_exit` turns pydantic's validation error into that line.
Tracing is configured only by the standard ``OTEL_*`` variables (see ``tracing.py``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "APP_"
# A comma-separated list in the environment ("a, b"), not JSON: what a ConfigMap value holds.
CommaList = Annotated[tuple[str, ...], NoDecode]
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"})


class Settings(BaseSettings):
    """Every runtime knob of the service; the README's configuration table mirrors this class."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    env: Literal["production", "development"] = "production"
    host: str = Field("0.0.0.0", min_length=1)
    port: int = Field(8000, ge=1, le=65535)
    metrics_port: int = Field(9000, ge=1, le=65535)
    workers: int | None = Field(None, ge=1, le=256)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_format: Literal["json", "console"] = "json"
    access_log: bool = True
    docs_enabled: bool = False
    max_body_bytes: int = Field(1024 * 1024, ge=1)
    max_header_bytes: int = Field(32 * 1024, ge=1024, le=1024 * 1024)
    header_timeout_seconds: float = Field(10.0, gt=0, le=600)
    max_concurrent_requests: int = Field(100, ge=1)
    shutdown_delay_seconds: float = Field(5.0, ge=0, le=300)
    graceful_timeout_seconds: float = Field(20.0, gt=0, le=600)
    readiness_timeout_seconds: float = Field(2.0, gt=0, le=60)
    readiness_cache_seconds: float = Field(1.0, ge=0, le=60)
    keepalive_seconds: int = Field(5, ge=1, le=3600)
    worker_timeout_seconds: int = Field(30, ge=1, le=3600)
    max_requests: int = Field(0, ge=0)
    max_requests_jitter: int = Field(0, ge=0)
    forwarded_allow_ips: str = "127.0.0.1"
    # A request body must keep arriving: at most this long between two reads of its bytes
    # (nginx's client_body_timeout); past it 408 and the connection is closed.
    body_timeout_seconds: float = Field(10.0, gt=0, le=600)
    # WebSockets: protocol pings, a peer that sends nothing for the idle limit is closed.
    ws_ping_interval_seconds: float = Field(20.0, ge=0, le=3600)  # 0: no pings
    ws_ping_timeout_seconds: float = Field(20.0, gt=0, le=3600)
    ws_idle_timeout_seconds: float = Field(300.0, gt=0, le=86400)
    # CORS: off while no origin is allowed; applied outside the platform layer, so the
    # platform's own 503/413/431/408/500 answers carry the headers the policy grants.
    cors_allow_origins: CommaList = ()
    cors_allow_methods: CommaList = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    cors_allow_headers: CommaList = ()
    cors_expose_headers: CommaList = ("X-Request-ID",)
    cors_allow_credentials: bool = False
    cors_max_age_seconds: int = Field(600, ge=0, le=86400)

    @field_validator(
        "cors_allow_origins",
        "cors_allow_methods",
        "cors_allow_headers",
        "cors_expose_headers",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin == "*":
                continue
            if not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(
                    f"{origin!r} is not an origin (scheme://host[:port], no path) or *"
                )
        return value

    @field_validator("cors_allow_methods")
    @classmethod
    def _methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        upper = tuple(m.upper() for m in value)
        unknown = [m for m in upper if m not in _HTTP_METHODS]
        if unknown:
            raise ValueError(f"unknown HTTP method(s) {', '.join(unknown)}")
        return upper

    @field_validator("host")
    @classmethod
    def _resolvable_host(cls, value: str) -> str:
        try:
            socket.getaddrinfo(value, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise ValueError(f"not an address this machine can bind ({exc})") from None
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _ip_list(cls, value: str) -> str:
        for part in (p.strip() for p in value.split(",")):
            if part == "*":
                continue
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(
                    f"{part!r} is not an IP address or network; use a comma-separated list or *"
                ) from None
        return value

    @model_validator(mode="after")
    def _ports_differ(self) -> Settings:
        if self.port == self.metrics_port:
            raise ValueError("APP_METRICS_PORT must differ from APP_PORT")
        if self.cors_allow_credentials and "*" in self.cors_allow_origins:
            raise ValueError(
                "APP_CORS_ALLOW_CREDENTIALS=true needs explicit APP_CORS_ALLOW_ORIGINS, not *"
            )
        return self

    @property
    def cors_enabled(self) -> bool:
        return bool(self.cors_allow_origins)


def describe_error(error: ValidationError) -> str:
    """Render a validation error as one line naming each bad setting and its value."""
    parts = []
    for item in error.errors(include_url=False):
        loc = [str(p) for p in item.get("loc", ()) if p != "__root__"]
        msg = item.get("msg", "invalid value").removeprefix("Value error, ")
        if loc:
            name = ENV_PREFIX + loc[0].upper()
            raw = os.environ.get(name)
            shown = f" (got {raw!r})" if raw is not None else ""
            parts.append(f"{name}: {msg}{shown}")
        else:
            parts.append(msg)
    return "; ".join(parts)


def config_error_exit(message: str) -> None:
    """Print one line on stderr and stop with exit code 2 (before any socket is bound)."""
    sys.stderr.write(f"configuration error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(2)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; raises ``ValidationError`` on a bad value."""
    return Settings()


def load_settings_or_exit() -> Settings:
    """Settings for the server start-up path: a bad value ends the process with one line."""
    try:
        return get_settings()
    except ValidationError as error:
        config_error_exit(describe_error(error))
        raise  # unreachable: config_error_exit raises SystemExit
