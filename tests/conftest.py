"""Shared fixtures: a real gunicorn server per module, tool discovery with CI rules, and the
measured figures, printed at the end of the run in a "figures" section."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.support.server import SAMPLE_APP, GunicornServer, running_server

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str, install_hint: str) -> str:
    """Path of ``name``; in CI a missing tool fails, elsewhere the test skips with a hint."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found; install it with: {install_hint}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


# Targets a figure is shown against (issue 16), by the name of the measured value: printed
# beside it with "met" or "MISSED", never asserted (timing depends on the machine).
TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "normal_failures_pct": ("<= 1 %", lambda v: v <= 1),
    "normal_p99_ms": ("< 100 ms", lambda v: v < 100),
    "resets_or_errors": ("0 in 200 tries (every 2 MiB body gets its 413)", lambda v: v == 0),
}


@dataclass
class Figure:
    test: str  # the test (or fixture) that measured it
    name: str
    text: str
    values: dict[str, object]


FIGURES: list[Figure] = []


def figure(name: str, text: str | None = None, /, **values: object) -> None:
    """Record one measured figure: a free text or ``key=value`` pairs (or both).

    Printed at once (``pytest -s`` shows it live) and again, with the targets of
    :data:`TARGETS`, in the "figures" section at the end of the run, which ``make test``
    shows whether the tests passed or not. Figures are never asserted on.
    """
    shown = " ".join(
        [*([text] if text is not None else []), *(f"{k}={v}" for k, v in values.items())]
    )
    current = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    FIGURES.append(Figure(current, name, shown, values))
    print(f"\nFIGURE {name}: {shown}", flush=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("figures")
    write("measured on this machine; targets are shown, never asserted")
    test = None
    for fig in FIGURES:
        if fig.test != test:
            test = fig.test
            write(test or "(outside a test)")
        write(f"  FIGURE {fig.name}: {fig.text}")
        for key, value in fig.values.items():
            if key in TARGETS and isinstance(value, (int, float)):
                target, met = TARGETS[key]
                write(f"      {key}={value}  target {target}: {'met' if met(value) else 'MISSED'}")


@pytest.fixture(scope="module")
def server() -> Iterator[GunicornServer]:
    """A two-worker service with default production settings (drain delay 0 for speed),
    serving the team's app: the platform's tests do not depend on the sample API. The sample
    API's suites (tests/loadtest, tests/observability) override it with ``sample_server``."""
    with running_server(workers=2) as srv:
        yield srv


@pytest.fixture(scope="module")
def sample_server() -> Iterator[GunicornServer]:
    """The same service serving the sample API (``app.main:app``)."""
    with running_server(workers=2, app=SAMPLE_APP) as srv:
        yield srv


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
