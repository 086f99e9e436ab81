"""Route templates for labels: ``(method, path) -> "/api/v1/users/{uid}"``.

Metrics, the span name and the access line are labelled with the route *template*, never the
raw path. FastAPI (0.165) includes a router lazily: ``include_router`` adds one entry for the
whole router and ``scope["route"]`` is then the inner route with its *own* path
(``/{uid}``-relative, without the prefixes of the routers around it). So the platform builds its
own table of full templates, through FastAPI's public ``iter_route_contexts``, which yields
every effective route of every included router at any depth with its full path, and
descends into Starlette ``Mount``s itself.

The table is built on first use (after the team has added all its routes) and the lookup is
cached per (method, path): static paths are a dict hit, templated paths one regex pass over
the templated routes (in the app's order, which is the order FastAPI matches in).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any

from fastapi.routing import iter_route_contexts
from starlette.routing import Mount, WebSocketRoute, compile_path

from app.platform.health import PROBE_PATHS

UNMATCHED_ROUTE = "unmatched"
# WebSocket routes match only WebSocket handshakes, which resolve with this "method".
WEBSOCKET = "WEBSOCKET"
_WEBSOCKET_ONLY = frozenset({WEBSOCKET})


def route_templates(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(full template, methods or None)`` of every route, in matching order."""
    for context in iter_route_contexts(list(routes)):
        route = context.original_route
        if isinstance(route, Mount):
            # A mounted sub-app: its own routes under the mount's path (in an included
            # router, the effective one, with the prefixes of the routers around it).
            mount_prefix = prefix + (context.path or route.path)
            inner = list(getattr(route, "routes", None) or ())
            if inner:
                yield from route_templates(inner, mount_prefix)
            else:
                yield mount_prefix + "/{path:path}", None
            continue
        path = context.path_format or context.path
        if path is None:
            continue
        if isinstance(route, WebSocketRoute):
            yield prefix + path, _WEBSOCKET_ONLY
        else:
            yield prefix + path, context.methods


class RouteResolver:
    """Maps a request's (method, path) to its route template; see the module docstring.

    A method mismatch still names the route (FastAPI answers 405 there). Unmatched paths
    share one label value, so a scanner cannot blow up the series count.
    """

    def __init__(self, routes: Callable[[], Iterable[Any]]) -> None:
        self._routes = routes
        self.resolve: Callable[[str, str], str] = self._first_call

    def _first_call(self, method: str, path: str) -> str:
        self.resolve = self._build()
        return self.resolve(method, path)

    def _build(self) -> Callable[[str, str], str]:
        static: dict[str, list[tuple[str, Any]]] = {}
        templated: list[tuple[Any, str, Any]] = []
        for template, methods in route_templates(self._routes()):
            if "{" in template:
                templated.append((compile_path(template)[0], template, methods))
            else:
                static.setdefault(template, []).append((template, methods))

        @lru_cache(maxsize=4096)
        def resolve(method: str, path: str) -> str:
            if path in PROBE_PATHS:
                return path
            partial = None
            for template, methods in static.get(path, ()):
                if not methods or method in methods:
                    return template
                partial = partial or template
            for regex, template, methods in templated:
                if regex.match(path) is None:
                    continue
                if not methods or method in methods:
                    return template
                partial = partial or template
            return partial or UNMATCHED_ROUTE

        return resolve
