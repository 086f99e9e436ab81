"""The sample API: a stand-in for a team's own routes. Replace this folder to ship yours.

Export ``routers`` (a list of ``APIRouter``) and optionally ``readiness_checks``
(name -> async callable) — that is all ``app.main`` needs.
"""

from app.api.routes import router

routers = [router]
readiness_checks: dict = {}
