"""A team's own service inside the kit: the platform's tests run against it.

It is what a platform team writes when it replaces ``app/api/`` (the sample API): nested
routers with path parameters, its own prometheus-client metrics, a WebSocket, a streaming
response, a blocking ``def`` route, a background task, a Redis client opened by its lifespan
and checked by readiness, an outgoing HTTP call traced by
``opentelemetry-instrumentation-httpx``, and (with ``TEAM_EDGE_HEADER``) its own outer
middleware. Served exactly like the sample API:
``gunicorn -c gunicorn.conf.py tests.teamapp.main:app``.
"""
