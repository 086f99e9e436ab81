"""Settings: defaults, environment parsing, and the one-line error for a bad value."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.platform.settings import Settings, describe_error


@pytest.fixture(autouse=True)
def _no_app_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("APP_"):
            monkeypatch.delenv(key)


def test_defaults_match_the_spec() -> None:
    s = Settings()
    assert (s.env, s.port, s.metrics_port, s.workers) == ("production", 8000, 9000, None)
    assert (s.log_format, s.docs_enabled, s.max_body_bytes) == ("json", False, 1024 * 1024)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PORT", "8080")
    monkeypatch.setenv("APP_DOCS_ENABLED", "true")
    monkeypatch.setenv("APP_SHUTDOWN_DELAY_SECONDS", "2.5")
    s = Settings()
    assert (s.port, s.docs_enabled, s.shutdown_delay_seconds) == (8080, True, 2.5)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("APP_PORT", "eighty", "valid integer"),
        ("APP_PORT", "70000", "less than or equal to 65535"),
        ("APP_WORKERS", "0", "greater than or equal to 1"),
        ("APP_LOG_FORMAT", "xml", "'json' or 'console'"),
        ("APP_DOCS_ENABLED", "maybe", "valid boolean"),
        ("APP_GRACEFUL_TIMEOUT_SECONDS", "0", "greater than 0"),
        ("APP_HEADER_TIMEOUT_SECONDS", "0", "greater than 0"),
    ],
)
def test_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    line = describe_error(info.value)
    assert "\n" not in line
    assert line.startswith(f"{name}: ")
    assert fragment in line
    assert repr(value) in line


def test_equal_ports_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_METRICS_PORT", "8000")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "APP_METRICS_PORT must differ from APP_PORT" in describe_error(info.value)
