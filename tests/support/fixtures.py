"""Fixtures a suite's conftest imports to change a shared fixture for its own folder."""

from __future__ import annotations

import pytest

from tests.support.server import GunicornServer


@pytest.fixture(scope="module", name="server")
def sample_api_as_server(sample_server: GunicornServer) -> GunicornServer:
    """``server`` for the sample API's own suites (tests/loadtest, tests/observability): the
    conftest that imports this overrides ``server`` (the team's app) in its folder."""
    return sample_server
