"""The team's ``app/main.py``: the kit's factory around the team's routers and resources."""

from app.platform.app_factory import create_app
from app.platform.settings import load_settings_or_exit
from tests.teamapp import api, middleware, resources

settings = load_settings_or_exit()
app = create_app(
    settings,
    api.routers(),
    title="team-service",
    lifespan=resources.lifespan,
    readiness_checks=resources.readiness_checks(),
    middleware=middleware.middleware(),
)
