"""Resilience suite (issue 8): the slow marker; helpers live in ``helpers.py``."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a resilience test that takes more than ~10 s (still run by make test)"
    )
