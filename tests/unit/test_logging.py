"""Log rendering: JSON fields, request context, stdlib lines, and forge-proof values."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import structlog

from app.platform.context import request_id_var
from app.platform.logging import configure_logging, get_logger

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
