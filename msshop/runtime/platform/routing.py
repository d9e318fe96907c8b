"""Requests to a service's endpoints: a plain ASGI router, with no framework on the way.

Measured for issue 14 (docs/benchmarks.md): the same one-row read answered over HTTP in
0.82x the time when uvicorn calls a plain ASGI function instead of a Starlette app (its
router, two exception layers and its response object), and granian did not beat uvicorn
here. So the platform routes itself; handlers still take Starlette's Request (a thin view
of the scope) and return its Response (a status, headers and bytes).

Each `Endpoint` becomes an `Operation` when it is registered: its handler, the converter of
its declared parameters (params.py), the check of the credential it requires, and its flags.
The app matches a request first (`match`: the operation goes in scope["msshop.route"]), so
the middlewares read the flags from the route; then, past them, the router checks the
credential, converts the parameters and calls the handler with the typed values by name.

Matching is Starlette's: a `{name}` segment takes anything up to the next "/"; a path that
matches with another method is a 405 naming every allowed method; GET routes answer HEAD.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from msshop.runtime.platform import disk
from msshop.runtime.platform.http import (
    HttpError,
    authorization,
    caller,
    json_response,
    one_line,
)
from msshop.runtime.platform.openapi import Endpoint, Handler
from msshop.runtime.platform.params import Converter

log = logging.getLogger("msshop.http")

ROUTE = "msshop.route"  # the scope's key for the matched Operation
ALLOWED = "msshop.allowed"  # and, when nothing matched, the methods the path allows
CALLER = "caller"  # the handler's keyword for who showed the credential


class Operation:
    """An endpoint as the router runs it, made once at registration."""

    __slots__ = ("chaos", "check", "convert", "handler", "passes_caller", "template",
                 "traced")

    def __init__(self, template: str | None, handler: Handler | None,
                 convert: Converter | None = None,
                 check: Callable[[Scope], str] | None = None, passes_caller: bool = False,
                 traced: bool = True, chaos: bool = True) -> None:
        self.template = template  # None: no route matched (answered 404 or 405)
        self.handler = handler
        self.convert = convert  # None: no parameters
        self.check = check  # None: no credential needed
        self.passes_caller = passes_caller
        self.traced = traced
        self.chaos = chaos

    async def answer(self, request: Request, path_params: Mapping[str, str]) -> Response:
        assert self.handler is not None
        if self.check is None and self.convert is None:
            return await self.handler(request)
        who = None if self.check is None else self.check(request.scope)
        values = {} if self.convert is None else self.convert(request.scope, path_params)
        if self.passes_caller:
            values[CALLER] = who
        return await self.handler(request, **values)


#: every request that matches no route: traced and subject to chaos, as any request is
UNROUTED = Operation(None, None)


class Credentials:
    """Who may call this service: its owner (`admin`, the digest of the sandbox's token)
    and, for the bus, the services (`services`: credential digest -> name)."""

    def __init__(self, admin: str | None, services: Mapping[str, str]) -> None:
        self.admin = admin
        self.services = services

    def check(self, endpoint: Endpoint) -> Callable[[Scope], str] | None:
        """What checks the credential `endpoint` requires, before its handler runs."""
        if endpoint.auth is None:
            return None
        if not endpoint.action:
            raise ValueError(f"{endpoint.method} {endpoint.path}: a route that requires a "
                             "credential says what it allows (action)")
        admin = self.admin if "owner" in endpoint.auth else None
        owner_refused = None if admin else self.admin  # the owner is told it may not
        services = self.services if "services" in endpoint.auth else {}
        what = endpoint.action

        def check(scope: Scope) -> str:
            return caller(authorization(scope), admin, services, what, owner_refused)

        return check


def operation(endpoint: Endpoint, credentials: Credentials) -> Operation:
    """The endpoint, ready to run; a ValueError if its handler does not take exactly the
    parameters it declares (by name, after the request), so the two cannot drift apart."""
    names = [p.name for p in endpoint.params]
    taken = list(inspect.signature(endpoint.handler).parameters)[1:]
    passes_caller = CALLER in taken
    if passes_caller and endpoint.auth is None:
        raise ValueError(f"{endpoint.method} {endpoint.path}: its handler takes `caller`, "
                         "but the route requires no credential")
    if sorted(names) != sorted(n for n in taken if n != CALLER):
        raise ValueError(f"{endpoint.method} {endpoint.path}: the handler takes {taken}, "
                         f"the route declares {names}")
    in_path = {s[1:-1] for s in endpoint.path.split("/") if s.startswith("{")}
    if in_path != {p.name for p in endpoint.params if p.where == "path"}:
        raise ValueError(f"{endpoint.method} {endpoint.path}: declare each path parameter")
    return Operation(endpoint.path, endpoint.handler,
                     Converter(endpoint.params) if endpoint.params else None,
                     credentials.check(endpoint), passes_caller, endpoint.traced,
                     endpoint.chaos)


class Route:
    """One path template and its operations by method."""

    __slots__ = ("operations", "params", "segments", "template", "variable")

    def __init__(self, template: str) -> None:
        self.template = template
        self.segments = template.split("/")[1:]
        # (index, name) of each "{name}" segment
        self.params = [(i, s[1:-1]) for i, s in enumerate(self.segments)
                       if s.startswith("{") and s.endswith("}")]
        self.variable = frozenset(i for i, _ in self.params)
        self.operations: dict[str, Operation] = {}

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """The path parameters, if `parts` (the path split at "/") is this template."""
        for i, (segment, part) in enumerate(zip(self.segments, parts, strict=True)):
            if i in self.variable:
                if not part:
                    return None
            elif segment != part:
                return None
        return {name: parts[i] for i, name in self.params}


#: seconds between two log lines about writes refused for a full disk (one per write
#: would fill a log as fast as purchases come)
FULL_DISK_LOG_EVERY = 30.0


class Router:
    """Dispatches an HTTP request to its operation. A handler's HttpError (or the
    credential's, or a parameter's) is answered as the JSON error it describes; a full disk
    (disk.py) 507 naming the service's file (`db_path`) and the fix; any other exception is
    logged and answered 500, naming the log to read."""

    def __init__(self, service: str, credentials: Credentials | None = None,
                 db_path: Path | None = None) -> None:
        self.service = service
        self.credentials = credentials or Credentials(None, {})
        self.db_path = db_path
        self._full_logged_at: float | None = None  # monotonic; None: not full, as last seen
        self._refused_since_logged = 0
        self.exact: dict[str, Route] = {}  # templates without parameters, by path
        # templates with parameters, by (number of segments, first segment)
        self.templated: dict[tuple[int, str], list[Route]] = {}
        # a known failure put in words (the service's damaged file: db.py's damaged), so
        # that it is answered and logged as one line, not as a traceback
        self.explain: Callable[[Exception], str | None] = lambda exc: None

    def add(self, endpoint: Endpoint) -> None:
        route = self._route(endpoint.path)
        made = operation(endpoint, self.credentials)
        route.operations[endpoint.method] = made
        if endpoint.method == "GET":
            route.operations.setdefault("HEAD", made)

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
        return [(route.template, method) for route in every for method in route.operations
                if method != "HEAD"]

    def find(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | str:
        """The operation and path parameters for a request, or what to answer: the
        methods allowed on the path ("" if nothing has the path)."""
        allowed: set[str] = set()
        route = self.exact.get(path)
        if route is not None:
            found = route.operations.get(method)
            if found is not None:
                return found, {}
            allowed.update(route.operations)
        parts = path.split("/")[1:]
        for route in self.templated.get((len(parts), parts[0]), ()):
            params = route.match(parts)
            if params is None:
                continue
            found = route.operations.get(method)
            if found is not None:
                return found, params
            allowed.update(route.operations)
        return ", ".join(sorted(allowed))

    def match(self, scope: Scope) -> Operation:
        """Find the request's operation and keep it in the scope (scope["msshop.route"]),
        where the middlewares read its flags and the router finds it again."""
        found = self.find(scope["method"], scope["path"])
        if isinstance(found, str):
            scope[ROUTE], scope[ALLOWED] = UNROUTED, found
            return UNROUTED
        scope[ROUTE], scope["path_params"] = found
        return found[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: Operation | None = scope.get(ROUTE)
        if route is None:
            route = self.match(scope)
        if route is UNROUTED:
            await self._refuse(scope[ALLOWED], scope, receive, send)
            return
        try:
            response = await route.answer(Request(scope, receive), scope["path_params"])
        except HttpError as exc:
            response = json_response({"error": one_line(exc.message), "status": exc.status,
                                      "service": self.service, **exc.extra}, exc.status)
        except Exception as exc:
            if disk.is_full(exc):
                response = self._disk_full(scope)
                await respond(response, scope, receive, send)
                return
            known = self.explain(exc)
            if known is None:
                log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            else:
                log.error("%s %s: %s", scope["method"], scope["path"], known)
            response = json_response({
                "error": one_line(known or f"{self.service} failed: {type(exc).__name__}: "
                                           f"{exc}; see: msshop logs {self.service}"),
                "status": 500, "service": self.service}, 500)
        await respond(response, scope, receive, send)

    def _disk_full(self, scope: Scope) -> Response:
        """507, and a log line now and then (not a traceback: nothing is broken)."""
        message = disk.full_disk(self.service, self.db_path)
        self._refused_since_logged += 1
        now = time.monotonic()
        if self._full_logged_at is None or now - self._full_logged_at >= FULL_DISK_LOG_EVERY:
            log.warning("%s %s refused: %s (%d write(s) refused so far)", scope["method"],
                        scope["path"], message, self._refused_since_logged)
            self._full_logged_at, self._refused_since_logged = now, 0
        return json_response({"error": one_line(message), "status": disk.STATUS,
                              "service": self.service}, disk.STATUS)

    async def _refuse(self, allowed: str, scope: Scope, receive: Receive, send: Send
                      ) -> None:
        method, path = scope["method"], scope["path"]
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
