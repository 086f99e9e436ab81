"""Log rendering: JSON fields, request context, stdlib lines, and forge-proof values."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import structlog

from app.platform.context import request_id_var
from app.platform.logging import FLUSH_ROWS, access_log, configure_logging, get_logger

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


class _Stdout:
    """Stands in for sys.stdout with a bytes buffer, as the real one has."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def write(self, text: str) -> int:
        return self.buffer.write(text.encode())

    def flush(self) -> None:
        pass


@pytest.fixture
def stdout() -> Iterator[_Stdout]:
    yield _Stdout()
    structlog.reset_defaults()
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})


def lines(out: _Stdout) -> list[str]:
    return out.buffer.getvalue().decode().splitlines()


def test_structlog_line_has_required_fields(stdout: _Stdout) -> None:
    configure_logging("info", "json", stdout)
    token = request_id_var.set("req-1")
    try:
        get_logger("app.test").info("hello", answer=42)
    finally:
        request_id_var.reset(token)
    (line,) = lines(stdout)
    event = json.loads(line)
    assert event["event"] == "hello" and event["logger"] == "app.test"
    assert event["level"] == "info" and event["answer"] == 42
    assert event["request_id"] == "req-1"
    assert RFC3339_UTC.match(event["timestamp"])


def test_stdlib_lines_share_the_format(stdout: _Stdout) -> None:
    configure_logging("info", "json", stdout)
    logging.getLogger("gunicorn.error").warning("worker %s booted", 7)
    (line,) = lines(stdout)
    event = json.loads(line)
    assert event["event"] == "worker 7 booted"
    assert (event["logger"], event["level"]) == ("gunicorn.error", "warning")
    assert RFC3339_UTC.match(event["timestamp"])


def test_level_filter(stdout: _Stdout) -> None:
    configure_logging("warning", "json", stdout)
    get_logger("x").info("dropped")
    get_logger("x").warning("kept")
    assert [json.loads(x)["event"] for x in lines(stdout)] == ["kept"]


HOSTILE = 'evil\r\n{"level":"critical","event":"forged"}\n"quoted" \x1b[31m'


def test_hostile_values_cannot_forge_json_lines(stdout: _Stdout) -> None:
    configure_logging("info", "json", stdout)
    get_logger("app.access").info("request", path=HOSTILE, **{"user_agent": HOSTILE})
    (line,) = lines(stdout)
    event = json.loads(line)
    assert event["path"] == HOSTILE
    assert event["level"] == "info" and event["event"] == "request"


def test_hostile_values_cannot_split_console_lines(stdout: _Stdout) -> None:
    configure_logging("info", "console", stdout)
    get_logger("app.access").info("request", path=HOSTILE)
    assert len(lines(stdout)) == 1


def test_exceptions_render_as_structured_traceback(stdout: _Stdout) -> None:
    configure_logging("info", "json", stdout)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        get_logger("app.access").error("request", exc_info=exc)
    (line,) = lines(stdout)
    event = json.loads(line)
    assert event["exception"][0]["exc_type"] == "RuntimeError"


def test_hostile_stdlib_message_stays_on_one_console_line(stdout: _Stdout) -> None:
    configure_logging("info", "console", stdout)
    logging.getLogger("gunicorn.error").warning("bad request line: %s", HOSTILE)
    assert len(lines(stdout)) == 1


def test_access_lines_are_written_in_batches(stdout: _Stdout) -> None:
    """Inside a running loop a request only queues its line: 64 make a write, the rest
    follow within FLUSH_SECONDS; every field is rendered as the structlog path would."""
    configure_logging("info", "json", stdout)
    log = access_log()

    async def serve() -> tuple[int, int, int]:
        client = ("10.0.0.1", 5)
        for i in range(FLUSH_ROWS - 1):
            log.request("GET", f"/p/{i}", "/p/{i}", 200, 0.0012345, client, "r", None, None, None)
        queued = len(lines(stdout))
        log.request("GET", "/last", "/last", 201, 0.5, None, "r", 2**127 + 5, 7, None)
        batched = len(lines(stdout))
        flushed = asyncio.Event()
        flush = log.flush

        def flush_and_tell() -> None:
            flush()
            flushed.set()

        log.flush = flush_and_tell  # type: ignore[method-assign]  # what the timer calls
        log.request("POST", "/late", "/late", 204, 0.001, None, "r2", None, None, None)
        await asyncio.wait_for(flushed.wait(), timeout=5)
        return queued, batched, len(lines(stdout))

    queued, batched, final = asyncio.run(serve())
    assert (queued, batched, final) == (0, FLUSH_ROWS, FLUSH_ROWS + 1)
    events = [json.loads(line) for line in lines(stdout)]
    first, last, late = events[0], events[FLUSH_ROWS - 1], events[-1]
    assert first == {
        "method": "GET",
        "path": "/p/0",
        "route": "/p/{i}",
        "status": 200,
        "duration_ms": 1.234,
        "client_ip": "10.0.0.1",
        "request_id": "r",
        "event": "request",
        "logger": "app.access",
        "level": "info",
        "timestamp": first["timestamp"],
    }
    assert RFC3339_UTC.match(first["timestamp"])
    assert last["trace_id"] == f"{2**127 + 5:032x}" and last["span_id"] == f"{7:016x}"
    assert last["client_ip"] is None and "trace_id" not in late
    assert late["path"] == "/late"


def test_error_lines_are_not_batched(stdout: _Stdout) -> None:
    configure_logging("info", "json", stdout)
    log = access_log()

    async def serve() -> int:
        log.request("GET", "/ok", "/ok", 200, 0.001, None, "a", None, None, None)
        log.request("GET", "/x", "/x", 503, 0.001, None, "b", None, None, None)
        log.request("GET", "/y", "/y", 500, 0.001, None, "c", None, None, RuntimeError("e"))
        return len(lines(stdout))

    assert asyncio.run(serve()) == 2  # the 503 warning and the 500 error, at once
    warning, error = (json.loads(line) for line in lines(stdout))
    assert (warning["level"], warning["status"]) == ("warning", 503)
    assert error["level"] == "error" and "RuntimeError" in json.dumps(error)
