"""Requests to a service's endpoints: a plain ASGI router, with no framework on the way.

Measured for issue 14 (docs/benchmarks.md): the same one-row read answered over HTTP in
0.82x the time when uvicorn calls a plain ASGI function instead of a Starlette app (its
router, two exception layers and its response object), and granian did not beat uvicorn
here. So the platform routes itself; handlers still take Starlette's Request (a thin view
of the scope) and return its Response (a status, headers and bytes).

Matching is Starlette's: a `{name}` segment takes anything up to the next "/"; a path that
matches with another method is a 405 naming every allowed method; GET routes answer HEAD.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from msshop.runtime.platform.http import HttpError, json_response, one_line

log = logging.getLogger("msshop.http")

Handler = Callable[[Request], Awaitable[Response]]


class Route:
    """One path template and its handlers by method."""

    __slots__ = ("handlers", "params", "segments", "template", "variable")

    def __init__(self, template: str) -> None:
        self.template = template
        self.segments = template.split("/")[1:]
        # (index, name) of each "{name}" segment
        self.params = [(i, s[1:-1]) for i, s in enumerate(self.segments)
                       if s.startswith("{") and s.endswith("}")]
        self.variable = frozenset(i for i, _ in self.params)
        self.handlers: dict[str, Handler] = {}

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """The path parameters, if `parts` (the path split at "/") is this template."""
        for i, (segment, part) in enumerate(zip(self.segments, parts, strict=True)):
            if i in self.variable:
                if not part:
                    return None
            elif segment != part:
                return None
        return {name: parts[i] for i, name in self.params}


class Router:
    """Dispatches an HTTP request to its handler. A handler's HttpError is answered as the
    JSON error it describes; any other exception is logged and answered 500, naming the
    log to read."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.exact: dict[str, Route] = {}  # templates without parameters, by path
        # templates with parameters, by (number of segments, first segment)
        self.templated: dict[tuple[int, str], list[Route]] = {}

    def add(self, method: str, template: str, handler: Handler) -> None:
        route = self._route(template)
        route.handlers[method] = handler
        if method == "GET":
            route.handlers.setdefault("HEAD", handler)

    def _route(self, template: str) -> Route:
        route = Route(template)
        if not route.params:
            return self.exact.setdefault(template, route)
        key = (len(route.segments), route.segments[0])
        for known in self.templated.setdefault(key, []):
            if known.template == template:
                return known
        self.templated[key].append(route)
        return route

    def routes(self) -> list[tuple[str, str]]:
        """(template, method) of every route, HEAD left out."""
        every = [*self.exact.values(),
                 *(route for routes in self.templated.values() for route in routes)]
        return [(route.template, method) for route in every for method in route.handlers
                if method != "HEAD"]

    def find(self, method: str, path: str) -> tuple[Route, Handler, dict[str, str]] | str:
        """The route, handler and path parameters for a request, or what to answer: the
        methods allowed on the path ("" if nothing has the path)."""
        allowed: set[str] = set()
        route = self.exact.get(path)
        if route is not None:
            handler = route.handlers.get(method)
            if handler is not None:
                return route, handler, {}
            allowed.update(route.handlers)
        parts = path.split("/")[1:]
        for route in self.templated.get((len(parts), parts[0]), ()):
            params = route.match(parts)
            if params is None:
                continue
            handler = route.handlers.get(method)
            if handler is not None:
                return route, handler, params
            allowed.update(route.handlers)
        return ", ".join(sorted(allowed))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        found = self.find(method, path)
        if isinstance(found, str):
            await self._refuse(found, method, path, scope, receive, send)
            return
        route, handler, params = found
        scope["path_params"] = params
        scope["msshop.route"] = route.template
        try:
            response = await handler(Request(scope, receive))
        except HttpError as exc:
            response = json_response({"error": one_line(exc.message), "status": exc.status,
                                      "service": self.service, **exc.extra}, exc.status)
        except Exception as exc:
            log.exception("unhandled error in %s %s", method, path)
            response = json_response({
                "error": one_line(f"{self.service} failed: {type(exc).__name__}: {exc}; "
                                  f"see: msshop logs {self.service}"),
                "status": 500, "service": self.service}, 500)
        await respond(response, scope, receive, send)

    async def _refuse(self, allowed: str, method: str, path: str, scope: Scope,
                      receive: Receive, send: Send) -> None:
        if not allowed:
            status, message = 404, f"{self.service} has no route {method} {path}"
        else:
            status, message = 405, f"{self.service} does not allow {method} on {path}"
        response = json_response({"error": one_line(message), "status": status,
                                  "service": self.service}, status)
        if allowed:
            response.headers["allow"] = allowed
        await respond(response, scope, receive, send)


async def respond(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    """Send a response. A plain Response is two messages, sent here; anything else (a
    streaming response, background tasks) sends itself."""
    if type(response) is not Response or response.background is not None:
        await response(scope, receive, send)
        return
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
