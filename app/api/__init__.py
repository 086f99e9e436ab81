"""The sample API: a stand-in for a team's own routes. Replace this folder to ship yours.

``app.main`` hands what this package exports to ``create_app``:

- ``routers`` (required): a list of ``APIRouter``, nested to any depth;
- ``readiness_checks`` (optional): name -> async callable, run by ``/readyz`` (raise to
  fail);
- ``lifespan`` (optional): an async context manager factory for your resources (a database
  pool, a client), entered before ``/readyz`` can pass and left after the drain; what it
  yields (a dict) is what handlers read from ``request.state``;
- ``middleware`` (optional): a list of Starlette ``Middleware`` entries run *outside* the
  platform layer: they see every request, probes included, and the platform's own answers
  (503, 413, 404...). Middleware added with ``app.api.add_middleware`` runs inside it.

README, "Extending the kit", shows each with an example.
"""

from app.api.routes import router

routers = [router]
readiness_checks: dict = {}
