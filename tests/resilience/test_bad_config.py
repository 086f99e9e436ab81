"""Issue 8.8: every bad setting stops the server before it binds, with one line naming it.

The table has a row for every field of ``Settings`` (a new setting without a row fails
``test_every_setting_has_a_row``), plus the cross-field rule and the non-``APP_`` variables
the server reads (``WEB_CONCURRENCY``, ``OTEL_EXPORTER_OTLP_PROTOCOL``). Each row starts the
real ``gunicorn -c gunicorn.conf.py`` with the app port *and* the metrics port held open by
the test: a process that got as far as binding would log "Connection in use" (more than one
line), so one line plus a non-zero exit proves it stopped before binding. The starts run in
parallel (about half a second each).
"""

from __future__ import annotations

import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from app.platform.settings import Settings
from tests.support.server import REPO, VENV_BIN, clean_env, free_port, wait_for

# setting field -> invalid values (each must be refused on its own)
INVALID: dict[str, list[str]] = {
    "env": ["staging", ""],
    "host": ["", "999.1.1.1", "no such host.invalid"],
    "port": ["0", "65536", "http", "-1"],
    "metrics_port": ["0", "70000", "nine"],
    "workers": ["0", "257", "two", "-3"],
    "log_level": ["verbose", "INFO!"],
    "log_format": ["xml"],
    "access_log": ["maybe"],
    "docs_enabled": ["sometimes"],
    "max_body_bytes": ["0", "1MiB"],
    "max_header_bytes": ["100", "lots"],
    "header_timeout_seconds": ["0", "-1", "soon"],
    "max_concurrent_requests": ["0", "-5", "lots"],
    "shutdown_delay_seconds": ["-1", "301", "soon"],
    "graceful_timeout_seconds": ["0", "601"],
    "readiness_timeout_seconds": ["0", "61"],
    "readiness_cache_seconds": ["-1", "61"],
    "keepalive_seconds": ["0", "3601"],
    "worker_timeout_seconds": ["0", "3601"],
    "max_requests": ["-1", "many"],
    "max_requests_jitter": ["-1", "x"],
    "forwarded_allow_ips": ["not-an-ip", "10.0.0.0/33"],
    "body_timeout_seconds": ["0", "-1", "601", "soon"],
    "ws_ping_interval_seconds": ["-1", "3601", "often"],
    "ws_ping_timeout_seconds": ["0", "3601", "soon"],
    "ws_idle_timeout_seconds": ["0", "86401", "never"],
    "cors_allow_origins": ["ftp://x.example", "https://x.example/path", "not an origin"],
    "cors_allow_methods": ["FETCH", "GET,BREW"],
    "cors_allow_headers": [],
    "cors_expose_headers": [],
    "cors_allow_credentials": ["maybe"],
    "cors_max_age_seconds": ["-1", "86401", "long"],
}


@dataclass(frozen=True)
class Case:
    id: str
    env: dict[str, str]
    names: str  # the variable the one line must name


CASES = [
    Case(f"APP_{field.upper()}={value!r}", {f"APP_{field.upper()}": value}, f"APP_{field.upper()}")
    for field, values in INVALID.items()
    for value in values
] + [
    Case("APP_METRICS_PORT=APP_PORT", {"__same_ports__": "1"}, "APP_METRICS_PORT"),
    Case("WEB_CONCURRENCY=0", {"WEB_CONCURRENCY": "0", "__no_workers__": "1"}, "WEB_CONCURRENCY"),
    Case(
        "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ),
]


@dataclass
class Outcome:
    returncode: int | None
    output: str


def _start(case: Case) -> Outcome:
    """Start gunicorn with one bad value while both of its ports are held by this test."""
    holders = []
    ports = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        holders.append(s)
        ports.append(s.getsockname()[1])
    env = {
        **clean_env(),
        "APP_HOST": "127.0.0.1",
        "APP_PORT": str(ports[0]),
        "APP_METRICS_PORT": str(ports[1]),
        "APP_WORKERS": "1",
    }
    if "__same_ports__" in case.env:
        env["APP_METRICS_PORT"] = env["APP_PORT"]
    if "__no_workers__" in case.env:
        del env["APP_WORKERS"]
    env.update({k: v for k, v in case.env.items() if not k.startswith("__")})
    try:
        proc = subprocess.run(
            [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
        )
        return Outcome(proc.returncode, proc.stdout + proc.stderr)
    except subprocess.TimeoutExpired as exc:  # it started serving (or hung): a failure
        out = (exc.stdout or b"") + (exc.stderr or b"")
        return Outcome(None, out.decode(errors="replace") if isinstance(out, bytes) else out)
    finally:
        for s in holders:
            s.close()


# gunicorn itself reads WEB_CONCURRENCY with int() when its config module is imported, before
# gunicorn.conf.py runs, so a non-integer crashes with gunicorn's traceback. The service cannot
# intercept that without a different start command; kept visible as a strict xfail.
UPSTREAM = Case(
    "WEB_CONCURRENCY=abc", {"WEB_CONCURRENCY": "abc", "__no_workers__": "1"}, "WEB_CONCURRENCY"
)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        cases = [*CASES, UPSTREAM]
        return dict(zip((c.id for c in cases), pool.map(_start, cases), strict=True))


def test_every_setting_has_a_row() -> None:
    assert set(INVALID) == set(Settings.model_fields), (
        f"add invalid values for the new setting(s): {set(Settings.model_fields) ^ set(INVALID)}"
    )


def test_valid_configuration_still_starts() -> None:
    """Control: with the same harness and good values the server does bind and serve."""
    port, metrics_port = free_port(), free_port()
    env = {
        **clean_env(),
        "APP_HOST": "127.0.0.1",
        "APP_PORT": str(port),
        "APP_METRICS_PORT": str(metrics_port),
        "APP_WORKERS": "1",
    }
    proc = subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Listening at" in line:
                break
        else:
            pytest.fail("the server never bound its port")
        # ... and serves. Also, a SIGTERM sent while the worker is still booting (before
        # it has its own signal handlers) is swallowed by the master's inherited ones, and
        # the master then waits its whole graceful timeout for that worker.
        url = f"http://127.0.0.1:{port}/livez"
        wait_for(lambda: httpx.get(url, timeout=2).status_code == 200, timeout=60)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)  # reads what is left, so a full pipe cannot block it


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_value_exits_before_binding_with_one_line(
    case: Case, outcomes: dict[str, Outcome]
) -> None:
    _assert_one_line_exit(case, outcomes[case.id])


@pytest.mark.xfail(strict=True, reason="gunicorn parses WEB_CONCURRENCY before our config runs")
def test_non_integer_web_concurrency_upstream(outcomes: dict[str, Outcome]) -> None:
    _assert_one_line_exit(UPSTREAM, outcomes[UPSTREAM.id])


def _assert_one_line_exit(case: Case, outcome: Outcome) -> None:
    lines = [line for line in outcome.output.splitlines() if line.strip()]
    assert outcome.returncode is not None, f"did not exit within 20 s:\n{outcome.output}"
    assert outcome.returncode != 0, outcome.output
    assert "Listening at" not in outcome.output
    assert "Connection in use" not in outcome.output, "it tried to bind"
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{outcome.output}"
    assert case.names in lines[0], lines[0]
    assert "Traceback" not in outcome.output
