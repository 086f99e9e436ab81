"""Wiring only: the platform's app factory around the sample API's routers."""

from app import api
from app.platform.app_factory import create_app
from app.platform.settings import load_settings_or_exit

settings = load_settings_or_exit()
app = create_app(
    settings,
    api.routers,
    title="fastapi-app",
    version="0.1.0",
    readiness_checks=api.readiness_checks,
    lifespan=getattr(api, "lifespan", None),
)
