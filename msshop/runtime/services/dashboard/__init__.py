"""The live dashboard (issue 28): `msshop up --ui` runs it beside the services, a forked
msshop process like them (status, logs, stop, start; `down` stops it), bound to 127.0.0.1,
with no data of its own. `msshop ui` prints its address and login.

    GET  /health          what the supervisor asks (open)
    GET  /login?token=T   the token `msshop ui` prints -> a session cookie, then /
    GET  /                the page (page.py)
    GET  /state           the latest look at every part, JSON (gather.py's Snapshot)
    GET  /live            the same, as server-sent events: one look per interval, shared
                          by every tab
    GET  /events?type=T,U&source=S&limit=N
                          the bus's events the feed keeps (events.py), filtered, JSON
    GET  /ask?user=U&strategy=S   user U's orders by S (or "compare": both served
                          strategies), each with its trace and the files it touched (ask.py)
    POST /action          {"part", "action"[, "to"]}: break it from the page (actions.py); an
                          action, as every POST: the session's CSRF token and the
                          dashboard's origin
    GET  /history         the last two minutes of looks: [at, events waiting, behind]
    GET  /traces          the questions the query service answered last (its GET /traces)
    GET  /trace?id=T      trace T, gathered from every part (GET /spans)
    GET  /experiments     the scenarios, and the runs asked from here (experiments.py)
    GET  /report?id=R     run R's report page, as `msshop experiment --report` writes it
    POST /experiment      {"scenario"[, "seconds"]}: the supervisor runs it on this
                          sandbox; its progress is in every look (an action)
    POST /logout          the same

Each route is declared once below (ROUTES): whether it needs a session, and whether it is an
action. Every request's Host is checked first (guard.py: who may use it, and why).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from msshop.contracts.credentials import dashboard_login
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.tasks import cause_of
from msshop.runtime.services.dashboard.actions import Actions
from msshop.runtime.services.dashboard.ask import Asker, asked_strategies, asked_user
from msshop.runtime.services.dashboard.dead_letters import DeadLetters
from msshop.runtime.services.dashboard.events import Feed, filtered
from msshop.runtime.services.dashboard.experiments import Runs, ScenarioChoice
from msshop.runtime.services.dashboard.gather import Gatherer, Snapshot, encode
from msshop.runtime.services.dashboard.guard import CSRF_HEADER, Guard, Refused, Session
from msshop.runtime.services.dashboard.page import page
from msshop.runtime.services.dashboard.sagas import Sagas

log = logging.getLogger("msshop.ui")
PING_EVERY = 15.0  # seconds: a comment on an idle stream, so that proxies keep it open
Handler = Callable[[Request, Session | None], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    session: bool = True  # needs a logged-in session (its cookie)
    action: bool = False  # changes something: the CSRF token and the dashboard's Origin
    page: bool = False  # a browser navigates to it: a refusal is a page, not JSON


class DashboardApp:
    def __init__(self, ctx: ServiceContext, routes: list[Route], gatherer: Gatherer,
                 guard: Guard, actions: Actions, asker: Asker) -> None:
        self.name = ctx.name
        self.routes = {(r.method, r.path): r for r in routes}
        self.gatherer = gatherer
        self.guard = guard
        self.actions = actions
        self.asker = asker

    def release_held(self) -> None:
        self.gatherer.release()  # every stream ends at once when the dashboard stops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        request = Request(scope, receive)
        route = self.routes.get((request.method, request.url.path))
        try:
            if route is None:
                known = any(path == request.url.path for _, path in self.routes)
                raise Refused(405 if known else 404,
                              f"no {request.method} {request.url.path} here")
            self.guard.host(request.headers.get("host"))
            session = self.guard.session(request.cookies) if route.session else None
            if route.action:
                assert session is not None
                self.guard.action(session, request.headers.get(CSRF_HEADER),
                                  request.headers.get("origin"), request.headers.get("host"))
            response = await route.handler(request, session)
        except Refused as refused:
            response = self._refusal(refused, route is not None and route.page)
        except Exception as exc:
            log.error("%s %s failed: %s", request.method, request.url.path, cause_of(exc))
            response = self._refusal(Refused(500, f"the dashboard failed: {cause_of(exc)}; "
                                                  "see: msshop logs ui"),
                                     route is not None and route.page)
        secure(response)
        await response(scope, receive, send)

    def _refusal(self, refused: Refused, as_page: bool) -> Response:
        if as_page:
            return HTMLResponse(REFUSED.format(status=refused.status,
                                               message=_html(refused.message)),
                                status_code=refused.status)
        return Response(json.dumps({"error": refused.message, "status": refused.status,
                                    "service": self.name}),
                        status_code=refused.status, media_type="application/json")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        await self.gatherer.start()
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await self.gatherer.close()
        self.actions.close()
        self.asker.close()
        await send({"type": "lifespan.shutdown.complete"})


def secure(response: Response) -> None:
    """What every answer says to the browser: nothing of it in a frame, no address (the
    login's token) sent on to anyone, nothing cached."""
    response.headers.setdefault("x-frame-options", "DENY")
    response.headers.setdefault("referrer-policy", "no-referrer")
    response.headers.setdefault("x-content-type-options", "nosniff")
    response.headers.setdefault("cache-control", "no-store")


def _html(text: str) -> str:
    from html import escape

    return escape(text, quote=False)  # text of a paragraph: no attribute to break out of


REFUSED = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>msshop dashboard: {status}</title></head>
<body style="font: 17px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1 style="font-size: 1.3rem">msshop dashboard</h1><p>{message}</p></body></html>
"""


def create_app(ctx: ServiceContext) -> DashboardApp:
    assert ctx.credential is not None, "the supervisor gives the dashboard its credential"
    guard = Guard(ctx.port, dashboard_login(ctx.credential, os.getpid()))
    feed = Feed(ctx, lambda: gatherer.watching)  # reads the bus as the dashboard, read-only
    runs = Runs(ctx.db_path.parent)  # the experiments the supervisor ran for this page
    gatherer = Gatherer(dict(ctx.peer_urls), ctx.tasks, dict(ctx.monitors), feed,
                        DeadLetters(ctx.owner), runs, Sagas(ctx.owner))
    actions = Actions(ctx)
    asker = Asker(dict(ctx.peer_urls), ctx.owner)

    async def health(request: Request, session: Session | None) -> Response:
        return Response(json.dumps({"service": ctx.name, "status": "ok", "pid": os.getpid(),
                                    "watching": gatherer.watching, "problems": [],
                                    "tasks": ctx.tasks.health(),
                                    "feed": msgspec.to_builtins(feed.health())}),
                        media_type="application/json")

    async def log_in(request: Request, session: Session | None) -> Response:
        sid, _ = guard.log_in(request.query_params.get("token", ""))
        response = Response(status_code=303, headers={"location": "/"})
        response.headers["set-cookie"] = guard.set_cookie(sid)
        return response

    async def index(request: Request, session: Session | None) -> Response:
        assert session is not None
        nonce = secrets.token_urlsafe(16)
        response = HTMLResponse(page(session.csrf, nonce, ctx.sandbox or "sandbox"))
        response.headers["content-security-policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")
        return response

    async def state(request: Request, session: Session | None) -> Response:
        return Response(gatherer.encoded(await gatherer.current()),
                        media_type="application/json")

    async def live(request: Request, session: Session | None) -> Response:
        return StreamingResponse(_stream(gatherer), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    async def events(request: Request, session: Session | None) -> Response:
        asked = request.query_params
        return Response(encode(filtered(feed.kept, asked.get("type"), asked.get("source"),
                                        asked.get("limit"))), media_type="application/json")

    async def ask(request: Request, session: Session | None) -> Response:
        user_id = asked_user(request.query_params.get("user"))
        strategies = asked_strategies(request.query_params.get("strategy"))
        answers = [await asker.ask(user_id, strategy) for strategy in strategies]
        return Response(json.dumps({"user": user_id, "answers": answers}),
                        media_type="application/json")

    async def act(request: Request, session: Session | None) -> Response:
        part, action, to = _asked(await request.body())
        done = await actions.act(part, action, to)
        await gatherer.look()  # every tab sees the effect now, not at the next interval
        return Response(json.dumps({"done": done}), media_type="application/json")

    async def history(request: Request, session: Session | None) -> Response:
        return Response(json.dumps({"points": list(gatherer.history)}),
                        media_type="application/json")

    async def traces(request: Request, session: Session | None) -> Response:
        return Response(json.dumps({"traces": await asker.recent()}),
                        media_type="application/json")

    async def trace(request: Request, session: Session | None) -> Response:
        trace_id = request.query_params.get("id", "")
        return Response(json.dumps({"trace_id": trace_id,
                                    "spans": await asker.trace(trace_id)}),
                        media_type="application/json")

    async def experiment(request: Request, session: Session | None) -> Response:
        scenario, seconds = _experiment_asked(await request.body())
        done = await actions.experiment(scenario, seconds)
        await gatherer.look()
        return Response(json.dumps({"done": done}), media_type="application/json")

    async def experiments(request: Request, session: Session | None) -> Response:
        catalogue = msgspec.convert(await actions.scenarios(), list[ScenarioChoice])
        return Response(encode({"catalogue": catalogue, "runs": runs.listed()}),
                        media_type="application/json")

    async def report(request: Request, session: Session | None) -> Response:
        response = HTMLResponse(runs.report_page(request.query_params.get("id", "")))
        # the report's own inline script draws its charts; sandboxed, as a page of its
        # own origin: it reaches neither this dashboard's cookie nor its API
        response.headers["content-security-policy"] = (
            "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'")
        return response

    async def log_out(request: Request, session: Session | None) -> Response:
        guard.log_out(request.cookies)
        response = Response(status_code=204)
        response.headers["set-cookie"] = guard.clear_cookie()
        return response

    return DashboardApp(ctx, [
        Route("GET", "/health", health, session=False),
        Route("GET", "/login", log_in, session=False, page=True),
        Route("GET", "/", index, page=True),
        Route("GET", "/state", state),
        Route("GET", "/live", live),
        Route("GET", "/events", events),
        Route("GET", "/ask", ask),
        Route("GET", "/history", history),
        Route("GET", "/traces", traces),
        Route("GET", "/trace", trace),
        Route("GET", "/experiments", experiments),
        Route("GET", "/report", report, page=True),
        Route("POST", "/experiment", experiment, action=True),
        Route("POST", "/action", act, action=True),
        Route("POST", "/logout", log_out, action=True),
    ], gatherer, guard, actions, asker)


async def _stream(gatherer: Gatherer) -> AsyncIterator[bytes]:
    """Every look, as it is made, to one tab: the latest at once, then each new one."""
    gatherer.watching += 1
    try:
        snapshot: Snapshot | None = gatherer.latest or await gatherer.look()
        while snapshot is not None:
            yield b"data: " + gatherer.encoded(snapshot) + b"\n\n"
            while True:
                try:
                    async with asyncio.timeout(PING_EVERY):
                        snapshot = await gatherer.next(snapshot)
                    break
                except TimeoutError:
                    yield b": still here\n\n"
    finally:
        gatherer.watching -= 1


MAX_ASKED = 1024  # bytes of an action's body


def _object(body: bytes, what: str) -> Any:
    """A POST's JSON document (None: not JSON); 413 past MAX_ASKED bytes."""
    if len(body) > MAX_ASKED:
        raise Refused(413, f"{what}'s body is at most {MAX_ASKED} bytes")
    try:
        return json.loads(body)
    except ValueError:
        return None


def _experiment_asked(body: bytes) -> tuple[str, float | None]:
    """{"scenario": …[, "seconds": N]}, or one line saying what is wrong with it (the
    supervisor checks the values themselves)."""
    asked = _object(body, "an experiment")
    seconds = asked.get("seconds") if isinstance(asked, dict) else None
    if not isinstance(asked, dict) or not isinstance(asked.get("scenario"), str) or not (
            seconds is None or (isinstance(seconds, int | float)
                                and not isinstance(seconds, bool))):
        raise Refused(422, 'an experiment is {"scenario": "products-outage", "seconds": 10} '
                           '(seconds: optional, the scenario\'s own length)')
    return asked["scenario"], seconds


def _asked(body: bytes) -> tuple[str, str, str | None]:
    """{"part": …, "action": …[, "to": …]}, or one line saying what is wrong with it."""
    asked = _object(body, "an action")
    if not isinstance(asked, dict) or not isinstance(asked.get("part"), str) \
            or not isinstance(asked.get("action"), str) \
            or not isinstance(asked.get("to", ""), str):
        raise Refused(422, 'an action is {"part": "products", "action": "kill"}, or with a '
                           'link {"part": "query", "action": "partition", "to": "users"}')
    return asked["part"], asked["action"], asked.get("to")

