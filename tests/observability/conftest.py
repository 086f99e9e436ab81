"""This suite drives the sample API (its routes and series), so ``server`` serves it."""

from __future__ import annotations

import pytest

from tests.support.server import GunicornServer


@pytest.fixture(scope="module")
def server(sample_server: GunicornServer) -> GunicornServer:
    return sample_server
