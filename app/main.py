"""Wiring only: the platform's app factory around the sample API's exports.

``app/api/__init__.py`` exports ``routers`` and, optionally, ``readiness_checks``,
``lifespan`` and ``middleware`` (its docstring and README, "Extending the kit"); a team that
replaces ``app/api/`` keeps this file as it is.
"""

from app import api
from app.platform.app_factory import create_app
from app.platform.settings import load_settings_or_exit

settings = load_settings_or_exit()
app = create_app(
    settings,
    api.routers,
    title="fastapi-app",
    version="0.1.0",
    readiness_checks=getattr(api, "readiness_checks", None),
    lifespan=getattr(api, "lifespan", None),
    middleware=getattr(api, "middleware", ()),
)
