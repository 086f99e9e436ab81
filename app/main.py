"""Wiring only: the platform's app factory around the sample API's exports.

``app/api/__init__.py`` exports ``routers`` and, optionally, ``readiness_checks``,
``lifespan`` and ``middleware`` (its docstring and README, "Extending the kit"); a team that
replaces ``app/api/`` keeps this file as it is.
"""

from types import ModuleType
from typing import Any

from app import api
from app.platform.app_factory import create_app
from app.platform.settings import load_settings_or_exit


def _export(name: str, default: Any) -> Any:
    """An optional export of ``app.api``; a submodule of the same name (``app/api/lifespan.py``
    imported by the package) is not one."""
    value = getattr(api, name, default)
    return default if isinstance(value, ModuleType) else value


settings = load_settings_or_exit()
app = create_app(
    settings,
    api.routers,
    title="fastapi-app",
    version="0.1.0",
    readiness_checks=_export("readiness_checks", None),
    lifespan=_export("lifespan", None),
    middleware=_export("middleware", ()),
)
