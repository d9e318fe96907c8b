"""The app every service is: GET /health, GET /spans, POST /chaos, GET /openapi.json, JSON
errors, a server span per request, and resources (database, peers, relay, consumer) opened
with the app."""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Protocol

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from msshop import __version__
from msshop.contracts.shop import ChaosAnswer, Trespassed
from msshop.contracts.spans import RecentTraces, Spans, parse_traceparent, sampled
from msshop.contracts.status import Health
from msshop.runtime.platform.chaos import Chaos, ChaosMiddleware, Faults, Trespass
from msshop.runtime.platform.db import Database
from msshop.runtime.platform.http import json_response
from msshop.runtime.platform.isolation import held_by
from msshop.runtime.platform.links import Doors, Links
from msshop.runtime.platform.openapi import Endpoint, Param, document
from msshop.runtime.platform.routing import ROUTE, Credentials, Operation, Router
from msshop.runtime.platform.tasks import Tasks
from msshop.runtime.platform.tracing import Tracer, follow, unfollow

TraceId = Annotated[str, msgspec.Meta(min_length=32, max_length=32)]
MAX_RECENT = 100  # traces GET /traces lists at most

log = logging.getLogger("msshop.http")


class Resource(Protocol):
    """Something a service opens when it starts and closes when it stops. One that can hold
    a request open (the bus's long-poll) also has `release()`: see release_held."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def release_held(app: object) -> None:
    """The service begins to stop: each resource that holds requests open answers them now
    with what it has. The server waits for open requests before it closes the resources,
    so without this a long-poll would hold the stop (or be cut off, with an error)."""
    release = getattr(app, "release_held", None)  # a ServiceApp, or the dashboard's app
    if callable(release):
        release()


def service_app(
    service: str,
    endpoints: Sequence[Endpoint],
    health: Callable[[], dict[str, Any]],
    resources: Sequence[Resource] = (),
    tracer: Tracer | None = None,
    admin: str | None = None,
    description: str = "",
    links: Links | None = None,
    senders: Mapping[str, str] | None = None,
) -> ServiceApp:
    """An ASGI app with the service's `endpoints` and what every service has: GET
    /health, GET /spans, POST /chaos, GET /openapi.json (its OpenAPI document, generated
    from the endpoints' declarations; `description` says what the service is) and JSON
    errors.

    `resources` start in order when the app starts (in the service's own process, after
    the fork) and close in reverse order when it stops. Every request to a route declared
    `traced` (all but /health, /spans and /openapi.json) gets a server span, child of the
    caller's `traceparent` if it sent one.

    `admin` (the digest of the sandbox's token) and `senders` (the bus's: credential digest
    -> service) are who may call the routes that declare `auth`.

    `links`: the faults on the service's own calls, which POST /chaos with `to` sets; by
    default the ones its Peers and bus (among `resources`) act on.

    A resource with a `release()` method is told when the service begins to stop, before
    open requests are waited for (release_held).
    """
    tracer = tracer or Tracer(service)

    ready_at: list[float] = []  # when startup finished (unix seconds), once it has

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        opened: list[Resource] = []
        try:
            for resource in resources:
                try:
                    await resource.start()
                except Exception as exc:
                    # one line with the cause, for `msshop up` to quote: uvicorn's own line
                    # ("Application startup failed") names none
                    log.error("%s could not start: %s", service, exc)
                    raise
                opened.append(resource)
            ready_at.append(time.time())
            yield
        finally:
            for resource in reversed(opened):
                await resource.close()

    chaos = Chaos(service, links if links is not None else links_of(resources),
                  doors_of(resources))

    supervisors = tasks_of(resources)

    async def health_endpoint(request: Request) -> Response:
        # 200 whatever it says: a service that answers is up (the supervisor's readiness);
        # "degraded" while background work fails, and `problems` says which and why
        problems = [line for tasks in supervisors for line in tasks.problems()]
        return json_response({"service": service, "status": "degraded" if problems else "ok",
                              "pid": os.getpid(),
                              "ready_at": ready_at[0] if ready_at else None,
                              "chaos": chaos.active(), "isolation": held_by(), **health(),
                              **({"calls": chaos.links.calls} if chaos.links.calls else {}),
                              "tasks": [task for tasks in supervisors
                                        for task in tasks.health()],
                              "problems": problems})

    async def spans_endpoint(request: Request, trace_id: str) -> Response:
        return json_response({"service": service, "spans": tracer.spans_of(trace_id)})

    async def traces_endpoint(request: Request, limit: int, route: str | None
                              ) -> Response:
        return json_response({"service": service, "traces": tracer.recent(limit, route)})

    built: list[bytes] = []  # the document, made at the first GET /openapi.json

    async def openapi_endpoint(request: Request) -> Response:
        if not built:
            built.append(msgspec.json.encode(
                document(service, every, description, __version__)))
        return Response(built[0], media_type="application/json")

    every = [
        Endpoint("GET", "/health", health_endpoint, "The service's health", {
            200: (Health, "The service, its process, its file's row counts, and what it "
                          "adds (outbox, head, consumer)")}, chaos=False, traced=False),
        Endpoint("GET", "/spans", spans_endpoint, "The service's spans of one trace", {
            200: (Spans, "The finished spans of that trace this service still keeps")},
            params=[Param("trace_id", TraceId, "the trace: 32 hex digits", required=True,
                          missing="ask for one trace: GET /spans?trace_id=<32 hex digits>")],
            auth="owner", action="reading spans",  # they name keys and rows
            chaos=False, traced=False),
        Endpoint("GET", "/traces", traces_endpoint,
                 "The requests this service answered last: one server span per trace", {
                     200: (RecentTraces, "The newest first, of the spans it still keeps")},
                 params=[Param("limit", Annotated[int, msgspec.Meta(ge=1, le=MAX_RECENT)],
                               "at most this many", default=20),
                         Param("route", Annotated[str, msgspec.Meta(min_length=1,
                                                                    max_length=200)],
                               "only requests to this route, e.g. /user-orders/{user_id}",
                               default=None)],
                 auth="owner", action="reading spans", chaos=False, traced=False),
        Endpoint("POST", "/chaos", chaos.endpoint,
                 "Inject faults: latency, jitter, errors; with `to` or `caller`, on a link", {
                     200: (ChaosAnswer, "The faults now injected (null: none), and on each "
                                        "link (`chaos.doors`: those kept here for a program "
                                        "of your own)")},
                 body=Faults, auth="owner", action="chaos", chaos=False),
        Endpoint("POST", "/chaos/trespass", chaos.trespass,
                 "Try to open another service's database file, to see the guard refuse", {
                     200: (Trespassed, "What was tried, and the isolation guard's refusal"),
                     422: "Not another service of the sandbox",
                     500: "The guard let it open the file (a bug; it was closed at once)"},
                 body=Trespass, auth="owner", action="trespass", chaos=False),
        Endpoint("GET", "/openapi.json", openapi_endpoint, "This document", {
            200: (dict[str, Any], "The service's OpenAPI 3.1 document")}, chaos=False,
            traced=False),
        *endpoints,
    ]
    router = Router(service, Credentials(admin, senders or {}), file_of(resources))
    for endpoint in every:
        router.add(endpoint)
    router.explain = explainer(resources)
    # faults inside the span, so that they show in traces
    handle = TracingMiddleware(ChaosMiddleware(router, chaos), tracer)
    return ServiceApp(handle, lifespan, router, lambda: release_all(resources))


class ServiceApp:
    """A service as one ASGI app: its resources opened and closed with the lifespan, and
    each request matched to its route first (so that the middlewares read its flags), then
    through tracing, chaos and the router (routing.py: no framework)."""

    def __init__(self, handle: ASGIApp,
                 lifespan: Callable[[], AbstractAsyncContextManager[None]],
                 router: Router, release_held: Callable[[], None]) -> None:
        self.handle = handle
        self.lifespan = lifespan
        self.router = router
        self.release_held = release_held

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:  # http: the server runs without websockets
            self.router.match(scope)
            await self.handle(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """ASGI's lifespan protocol, as Starlette speaks it: a failed start or stop is
        reported to the server with its traceback, then raised."""
        started = False
        await receive()  # lifespan.startup
        try:
            async with self.lifespan():
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()  # lifespan.shutdown
        except BaseException:
            failed = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
            await send({"type": failed, "message": traceback.format_exc()})
            raise
        await send({"type": "lifespan.shutdown.complete"})


def release_all(resources: Sequence[Resource]) -> None:
    """Call `release()` on each resource that has one (what holds requests open)."""
    for resource in resources:
        release = getattr(resource, "release", None)
        if callable(release):
            release()


def tasks_of(resources: Sequence[Resource]) -> list[Tasks]:
    """The supervisors of the background work the resources run (one per process, the
    ServiceContext's, which the Database, relay and consumer share), each once."""
    found: list[Tasks] = []
    for resource in resources:
        tasks = getattr(resource, "tasks", None)
        if isinstance(tasks, Tasks) and all(tasks is not seen for seen in found):
            found.append(tasks)
    return found


def file_of(resources: Sequence[Resource]) -> Path | None:
    """The service's own file, which a write refused for a full disk names."""
    return next((r.path for r in resources if isinstance(r, Database)), None)


def explainer(resources: Sequence[Resource]) -> Callable[[Exception], str | None]:
    """What puts a known failure in words: the service's database's `damaged` (db.py)."""
    damaged = [explain for resource in resources
               if callable(explain := getattr(resource, "damaged", None))]
    return lambda exc: next((words for explain in damaged
                             if (words := explain(exc)) is not None), None)


def doors_of(resources: Sequence[Resource]) -> Doors | None:
    """The doors of the service's process (its ServiceContext's, which its Database, or a
    resource's `doors`, holds):
    the ports programs of your own call it on, and the faults on those links."""
    for resource in resources:
        if isinstance(resource, Database):
            return resource.ctx.doors
        doors = getattr(resource, "doors", None)  # a service with no database (bus_door)
        if isinstance(doors, Doors):
            return doors
    return None


def links_of(resources: Sequence[Resource]) -> Links | None:
    """The Links the service's Peers and bus share (ServiceContext gives both its own), so
    that POST /chaos changes what they act on; None for a service that calls no one."""
    for resource in resources:
        links = getattr(resource, "links", None)
        if isinstance(links, Links):
            return links
    return None


class TracingMiddleware:
    """A server span per request to a route declared `traced` (pure ASGI: a few µs, no
    per-request objects beyond the span), named for the route's template. Answers carry
    `x-trace-id`, so a caller can find the trace of what it did."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: Operation | None = scope.get(ROUTE)
        if scope["type"] != "http" or (route is not None and not route.traced):
            await self.app(scope, receive, send)
            return
        parent = None
        followed = False
        for name, value in scope["headers"]:
            if name == b"traceparent":
                header = value.decode("latin-1")
                parent = parse_traceparent(header)
                followed = parent is not None and sampled(header)
                break
        method = scope["method"]
        attributes: dict[str, Any] = {"http.request.method": method, "url.path": scope["path"]}
        if query := scope.get("query_string"):  # what was asked: e.g. strategy=replicated
            attributes["url.query"] = query.decode("latin-1")
        span = self.tracer.start(f"{method} {scope['path']}", "server", attributes,
                                 *(parent or (None, None)))
        trace_header = (b"x-trace-id", span["trace_id"].encode())
        status = 500

        async def send_with_trace(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), trace_header]
            await send(message)

        token = self.tracer.activate(span)
        following = follow(followed)
        try:
            await self.app(scope, receive, send_with_trace)
        finally:
            unfollow(following)
            self.tracer.deactivate(token)
            template = (route.template if route is not None else None) or scope["path"]
            span["name"] = f"{method} {template}"
            attributes = span["attributes"]
            attributes["http.route"] = template
            attributes["http.response.status_code"] = status
            if status >= 500:
                span["status"] = "error"
            self.tracer.finish(span)


