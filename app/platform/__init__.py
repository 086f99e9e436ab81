"""The platform half of the service: everything a team keeps when it swaps the sample API.

Settings, logging, metrics, tracing, health, errors, the observability middleware and the
gunicorn server hooks live here; the routes a team owns live in ``app/api``.
"""
