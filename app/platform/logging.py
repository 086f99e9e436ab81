"""Structured logs: one JSON object per line on stdout, for the app and for gunicorn.

structlog renders with orjson straight to ``stdout``'s byte buffer (its documented fast
path); stdlib loggers (gunicorn, uvicorn, libraries) go through the same processors via
``ProcessorFormatter``, so every line has ``timestamp`` (RFC 3339, UTC), ``level``,
``event`` and ``logger``. Caller text only ever lands in JSON *values*, which orjson
escapes, so a CR/LF or a quote in a header cannot split or forge a line.
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import sys
import time
from typing import Any

import orjson
import structlog
import structlog.tracebacks
from opentelemetry import trace

from app.platform.context import request_id_var

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_CONTROL = str.maketrans({"\n": "\\n", "\r": "\\r", "\x1b": "\\x1b"})


def add_request_context(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Add ``request_id`` and, when a span is recording, ``trace_id``/``span_id``."""
    if "request_id" not in event:
        rid = request_id_var.get()
        if rid is not None:
            event["request_id"] = rid
    if "trace_id" not in event:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event["trace_id"] = format(ctx.trace_id, "032x")
            event["span_id"] = format(ctx.span_id, "016x")
    return event


def escape_control(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Console format only: keep the message on one line (other values are shown as repr,
    and JSON escapes everything by itself)."""
    message = event.get("event")
    if isinstance(message, str):
        event["event"] = message.translate(_CONTROL)
    return event


def _orjson_str(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=repr).decode()


def _orjson_bytes(obj: Any, **_: Any) -> bytes:
    return orjson.dumps(obj, default=repr)


_timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")


def _shared_processors() -> list[Any]:
    return [
        structlog.processors.add_log_level,
        _timestamper,
        add_request_context,
    ]


def _final_processors(log_format: str, *, as_bytes: bool) -> list[Any]:
    if log_format == "console":
        return [
            structlog.processors.format_exc_info,
            escape_control,
            structlog.dev.ConsoleRenderer(colors=False),
        ]
    serializer = _orjson_bytes if as_bytes else _orjson_str
    return [
        # Tracebacks as data, without frame locals (they may hold secrets).
        structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        ),
        structlog.processors.JSONRenderer(serializer=serializer),
    ]


def stdlib_formatter(log_format: str = "json") -> logging.Formatter:
    """The formatter gunicorn's and the stdlib's loggers use: same fields, same renderer."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *_shared_processors()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_final_processors(log_format, as_bytes=False),
        ],
    )


def logging_dict_config(
    log_level: str, log_format: str, stream: str = "ext://sys.stdout"
) -> dict[str, Any]:
    """``logging.config.dictConfig`` input, used for gunicorn's ``logconfig_dict`` too.

    The access loggers of gunicorn and uvicorn are silenced: the middleware writes the one
    access line per request.
    """
    level = log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {"()": stdlib_formatter, "log_format": log_format},
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": stream,
                "formatter": "structured",
            },
        },
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
            "uvicorn.error": {"level": level, "handlers": ["stdout"], "propagate": False},
            "uvicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
    }


def configure_logging(
    log_level: str = "info", log_format: str = "json", stream: Any = None
) -> None:
    """Configure structlog and the stdlib in this process (master or worker).

    ``stream`` (a text stream with a ``buffer``) defaults to ``sys.stdout``; tests pass theirs.
    """
    global _access_log
    stream = stream or sys.stdout
    config = logging_dict_config(log_level, log_format)
    config["handlers"]["stdout"]["stream"] = stream
    logging.config.dictConfig(config)
    structlog.configure(
        processors=[
            _rename_logger_key,
            *_shared_processors(),
            *_final_processors(log_format, as_bytes=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[log_level]),
        logger_factory=(
            structlog.BytesLoggerFactory(stream.buffer)
            if log_format == "json"
            else structlog.WriteLoggerFactory(stream)
        ),
        cache_logger_on_first_use=True,
    )
    _access_log = AccessLog(log_format, log_level, stream)


FLUSH_SECONDS = 0.05
FLUSH_ROWS = 64


class AccessLog:
    """Writes the one access line per request.

    JSON format takes a hand-rolled path: the same fields, key names and timestamp format as
    the structlog pipeline above, rendered by ``orjson.dumps``. Through structlog a line
    costs 9.4 us against 2.5 us here, both hot (``bench/micro.py``). Here a request
    only appends its fields as a tuple; the lines are rendered and written together at
    most ``FLUSH_SECONDS`` later (or every ``FLUSH_ROWS`` requests, or at shutdown), in
    one tight loop and one ``write`` syscall. The same rendering done inside each request
    cost 11 us per request under load against about 5 us batched (README, "Performance"):
    code run between a request's other work runs with cold caches. Error and warning lines
    (5xx, tracebacks) and the console format go through structlog, written at once.
    """

    def __init__(self, log_format: str, log_level: str, stream: Any) -> None:
        self._fast = log_format == "json"
        self._enabled = _LEVELS[log_level] <= _LEVELS["info"]
        self._warn_enabled = _LEVELS[log_level] <= _LEVELS["warning"]
        self._buffer = stream.buffer if self._fast else None
        self._rows: list[tuple[Any, ...]] = []
        self._slow = get_logger("app.access")
        self._second = -1
        self._prefix = ""

    def _timestamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"

    def request(
        self,
        method: str,
        path: str,
        route: str,
        status: int,
        seconds: float,
        client: tuple[str, int] | None,
        request_id: str,
        trace_id: int | None,
        span_id: int | None,
        error: BaseException | None,
    ) -> None:
        """The access line of one request: info, warning for a 5xx, error with traceback."""
        row = (method, path, route, status, seconds, client, request_id, trace_id, span_id)
        if error is None and status < 500 and self._fast:
            if self._enabled:
                rows = self._rows
                rows.append((time.time(), row))
                if len(rows) == 1:
                    try:
                        asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
                    except RuntimeError:  # no loop: write now
                        self.flush()
                elif len(rows) >= FLUSH_ROWS:
                    self.flush()
            return
        fields = _request_fields(row)
        if error is not None:
            self._slow.error("request", exc_info=error, **fields)
        elif status >= 500:
            if self._warn_enabled:
                self._slow.warning("request", **fields)
        elif self._enabled:
            self._slow.info("request", **fields)

    def flush(self) -> None:
        """Render and write the lines gathered so far (also called at shutdown)."""
        rows = self._rows
        if not rows or self._buffer is None:
            return
        self._rows = []
        dumps = orjson.dumps
        option = orjson.OPT_APPEND_NEWLINE
        lines = []
        for now, row in rows:
            fields = _request_fields(row)
            fields["event"] = "request"
            fields["logger"] = "app.access"
            fields["level"] = "info"
            fields["timestamp"] = self._timestamp(now)
            lines.append(dumps(fields, option=option))
        self._buffer.write(b"".join(lines))
        self._buffer.flush()


def _request_fields(row: tuple[Any, ...]) -> dict[str, Any]:
    """The access line's own fields, from the row ``AccessLog.request`` keeps."""
    method, path, route, status, seconds, client, request_id, trace_id, span_id = row
    fields = {
        "method": method,
        "path": path,
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "client_ip": client[0] if client else None,
        "request_id": request_id,
    }
    if trace_id is not None:
        fields["trace_id"] = f"{trace_id:032x}"
        fields["span_id"] = f"{span_id:016x}"
    return fields


_access_log: AccessLog | None = None


def access_log() -> AccessLog:
    """The access-line writer configured by the last :func:`configure_logging` call."""
    if _access_log is None:
        configure_logging()
    assert _access_log is not None
    return _access_log


def get_logger(name: str) -> Any:
    """A structlog logger whose lines carry ``logger=name``."""
    # Lazy: the proxy binds on first use, after configure_logging has run. The key is
    # renamed by ``_rename_logger_key``: structlog reserves ``logger`` as an argument name.
    return structlog.get_logger(logger_name=name)


def _rename_logger_key(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    name = event.pop("logger_name", None)
    if name is not None:
        event["logger"] = name
    return event
