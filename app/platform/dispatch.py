"""One-step dispatch to routes of nested routers (FastAPI 0.165's lazy include, flattened).

FastAPI 0.165 includes a router lazily: each request walks every level of nesting, and each
level matches its whole subtree twice (``_IncludedRouter.matches`` to pick the branch, then
``_handle_selected`` again to enter it), checking every router's routes version on the way.
On a route three routers deep that is 39 µs per request, more than the whole platform
layer costs (docs/performance.md). ``RouteIndex`` sits where the app's ``APIRouter`` starts
matching (``Router.middleware_stack``, inside FastAPI's exception handlers and exit stack)
and, for an ``APIRoute`` of an included router, does in one pass what those levels end up
doing: the first route whose path matches with the request's method, in FastAPI's own
order, is handed FastAPI's own effective route (the merged dependencies, response model,
body limit and handler FastAPI built for that inclusion) with the scope FastAPI would have
set (``path_params``, ``endpoint``, ``route``, ``router``, the effective route context),
and its handler is called as ``APIRoute.handle`` would call it.

Everything else goes to FastAPI's routing unchanged: a path no indexed route takes with
this method (404, 405, the trailing-slash redirect), a route FastAPI would match first that
is not such an ``APIRoute`` (a route on the app itself, a mount, a Starlette route, a
static frontend), routers with form limits, a ``root_path``, WebSockets, and FastAPI's own
telemetry when a team switches it on. The platform layer finds the route first, for its
labels (``PlatformMiddleware``), and leaves what it found in the scope, so a request is
matched once. The index is built on the first request, after every route is in (as
``routes.RouteResolver``); a route added later is still served, by FastAPI, unless a route
indexed before it takes the same request.

The private FastAPI names used here are fenced: ``pyproject.toml`` caps FastAPI at the
tested minor and ``tests/contract`` checks each one, so an upgrade fails there first; the
differential test (``tests/unit/test_route_index.py``) serves the same requests
through this index and through FastAPI's own routing and compares the answers.
``create_app(..., route_index=False)`` switches it off.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, _EffectiveRouteContext, _IncludedRouter
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

# FastAPI's own scope entries (fastapi.routing._FASTAPI_SCOPE_KEY and
# _FASTAPI_EFFECTIVE_ROUTE_CONTEXT_KEY; tests/contract checks both values).
FASTAPI_SCOPE_KEY = "fastapi"
EFFECTIVE_ROUTE_CONTEXT_KEY = "effective_route_context"
# Where FastAPI's native telemetry keeps its per-request state; its route selection must
# then go through FastAPI's routing.
FASTAPI_TELEMETRY_KEY = "fastapi.telemetry"
# Where the platform layer leaves (path, method, RouteIndex.find's answer) for the index.
FOUND_KEY = "app.platform.route_found"


class _Indexed:
    """An ``APIRoute`` of an included router, ready to be dispatched to directly."""

    __slots__ = ("context", "endpoint", "handle", "methods", "params", "regex", "route", "template")

    def __init__(self, context: Any) -> None:
        self.context = context
        self.template = context.path_format  # the full template: the route's label
        self.regex = context.path_regex
        self.params = context.param_convertors
        self.methods = context.methods
        self.endpoint = context.endpoint
        self.route = route = context.original_route
        # APIRoute.handle, for an effective route whose method matched, only calls the
        # handler FastAPI built for it: called directly, unless the route's class has its
        # own handle.
        self.handle = context.app if type(route).handle is APIRoute.handle else route.handle


class _Other:
    """Any other route: only asked whether it matches, FastAPI serves it if it does."""

    __slots__ = ("matches",)

    def __init__(self, route: Any) -> None:
        self.matches = route.matches


def index_entries(api: FastAPI) -> list[_Indexed | _Other]:
    """The app's routes in FastAPI's matching order, nested routers flattened."""
    router = api.router
    return list(_entries(router.routes, limited=bool(router.form_limits)))


def _entries(routes: Iterable[Any], limited: bool) -> Iterator[_Indexed | _Other]:
    for route in routes:
        if isinstance(route, _IncludedRouter):
            # Form limits are applied level by level as FastAPI enters each router; a
            # branch that has any is left to FastAPI.
            branch_limited = limited or bool(route.include_context.form_limits)
            yield from _entries(route.effective_candidates(), branch_limited)
        elif (
            isinstance(route, _EffectiveRouteContext)
            and isinstance(route.original_route, APIRoute)
            and route.starlette_route is None
            and not limited
        ):
            yield _Indexed(route)
        else:
            yield _Other(route)


class RouteIndex:
    """The app router's entry point with the one-step dispatch; see the module docstring."""

    def __init__(self, api: FastAPI, fallback: ASGIApp) -> None:
        self._api = api
        self._fallback = fallback  # the router's own middleware stack: FastAPI's routing
        self._entries: list[_Indexed | _Other] | None = None
        self.dispatched = 0  # requests served through the index (tests read it)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and FASTAPI_TELEMETRY_KEY not in scope:
            # The platform layer looked the route up already (for its labels), unless
            # something between it and here changed the path or method.
            found_for = scope.get(FOUND_KEY)
            if (
                found_for is not None
                and found_for[0] is scope["path"]
                and found_for[1] is scope["method"]
            ):
                found = found_for[2]
            else:
                found = self.find(scope)
            if found is not None:
                entry, params = found
                await self._dispatch(entry, params, scope, receive, send)
                return
        await self._fallback(scope, receive, send)

    def find(self, scope: Scope) -> tuple[_Indexed, dict[str, Any]] | None:
        """The indexed route FastAPI would pick for an HTTP request, with its converted path
        parameters; None when FastAPI's own routing must decide."""
        if scope.get("root_path"):
            return None
        entries = self._entries
        if entries is None:
            entries = self._entries = index_entries(self._api)
        path = scope["path"]
        method = scope["method"]
        for entry in entries:
            if type(entry) is _Other:
                if entry.matches(scope)[0] is not Match.NONE:
                    return None
                continue
            match = entry.regex.match(path)
            if match is None:
                continue
            if entry.methods and method not in entry.methods:
                continue  # a later route may take this method (else FastAPI's 405)
            params = match.groupdict()
            if params:
                convertors = entry.params
                for key, value in params.items():
                    params[key] = convertors[key].convert(value)
            return entry, params
        return None

    async def _dispatch(
        self, entry: _Indexed, params: dict[str, Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Set the scope as FastAPI's levels would for this route, then run FastAPI's handler
        for it."""
        if "router" not in scope:
            scope["router"] = self._api.router
        outer_params = scope.get("path_params")
        scope["path_params"] = {**outer_params, **params} if outer_params else params
        scope["endpoint"] = entry.endpoint
        scope["route"] = entry.route
        fastapi_scope = scope.get(FASTAPI_SCOPE_KEY)
        if fastapi_scope is None:
            scope[FASTAPI_SCOPE_KEY] = {EFFECTIVE_ROUTE_CONTEXT_KEY: entry.context}
        else:
            fastapi_scope[EFFECTIVE_ROUTE_CONTEXT_KEY] = entry.context
        self.dispatched += 1
        await entry.handle(scope, receive, send)


def install_route_index(api: FastAPI) -> RouteIndex:
    """Put a ``RouteIndex`` in front of ``api``'s router (kept as its fallback)."""
    router = api.router
    index = RouteIndex(api, router.middleware_stack)
    router.middleware_stack = index
    return index
