"""Shared fixtures: a real gunicorn server per module, and tool discovery with CI rules."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

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
