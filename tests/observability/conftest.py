"""This suite drives the sample API (its routes and series), so ``server`` serves it."""

from tests.support.fixtures import sample_api_as_server  # noqa: F401  (``server`` here)
