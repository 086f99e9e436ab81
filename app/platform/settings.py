"""Service settings, read once from ``APP_*`` environment variables.

A bad value must stop the process before it binds any port, with one line naming the
setting: :func:`load_settings_or_exit` turns pydantic's validation error into that line.
Tracing is configured only by the standard ``OTEL_*`` variables (see ``tracing.py``).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from functools import lru_cache
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "APP_"


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
        return self


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
