"""Fault injection: make a running service slow or failing, on demand, without a restart.

    POST /chaos  {"latency_ms", "jitter_ms", "error_rate"} | {"clear": true}
                 header authorization: Bearer <the sandbox's token>  (401 without, 403 wrong)
    POST /chaos  {"to": "<callee>", "latency_ms", "jitter_ms", "error_rate",
                 "duplicate_rate", "reorder_rate", "redeliver_rate" (to the bus only: the
                 delivery faults, links.py)} | {"to": "<callee>", "clear": true}:
                 the same on this service's own calls to that one service (links.py); a
                 `clear` without `to` clears everything, the requests answered and the links
    POST /chaos  {"caller": "<a program of your own>", "latency_ms", "jitter_ms",
                 "error_rate", "duplicate_rate", "reorder_rate", "redeliver_rate" (the bus
                 only)}: the same on that program's calls to this service, as they arrive
                 on its door (links.py's Doors); on the bus, the delivery faults act on
                 what that reader (by its credential) is handed
    POST /chaos/trespass  {"into": "<service>"}: the service tries to open that service's
                 database file, as a bug would, so that the isolation guard's refusal is
                 seen (answered and logged; nothing is opened)

The token is the one in the sandbox's state file (mode 0600): only the sandbox's owner can
read it, so only they can break their services. Faults apply to every request but those
to routes declared with chaos=False (/health, /spans, /chaos and /openapi.json: the
middleware reads the flag from the matched route), so the supervisor and `msshop status`
keep seeing the service (and `status` shows what is injected).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Annotated, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from msshop.contracts.status import ChaosState, LinkFault
from msshop.contracts.topology import BY_NAME, NAMES, keeps_doors_of
from msshop.runtime.platform.http import HttpError, json_response, read_body
from msshop.runtime.platform.isolation import trespass
from msshop.runtime.platform.links import BUS, Doors, Links, link_fault
from msshop.runtime.platform.openapi import documented
from msshop.runtime.platform.routing import ROUTE, Operation

log = logging.getLogger("msshop.chaos")

MAX_DELAY_MS = 60_000


class Faults(msgspec.Struct, forbid_unknown_fields=True):
    """What POST /chaos injects from now on (each left out: 0), or `clear` for none; with
    `to`, into this service's calls to that service instead of the requests it answers."""

    latency_ms: Annotated[float, documented("added to every request", minimum=0,
                                            maximum=MAX_DELAY_MS)] = 0.0
    jitter_ms: Annotated[float, documented("up to this much more, at random", minimum=0,
                                           maximum=MAX_DELAY_MS)] = 0.0
    error_rate: Annotated[float, documented("the share of requests failed with a 503",
                                            minimum=0, maximum=1)] = 0.0
    clear: Annotated[bool, documented("remove every fault (with `to`: that link's)")] = False
    to: Annotated[str | None, documented(
        "another service of the sandbox: act on this service's calls to it (a link)",
        maxLength=64)] = None
    duplicate_rate: Annotated[float, documented(
        "with to: bus only: the share of events read from the bus handed over again in a "
        "later read, out of order", minimum=0, maximum=1)] = 0.0
    reorder_rate: Annotated[float, documented(
        "with to or caller: bus only: the share of a page's aggregates with several "
        "updates in it handed them newest first", minimum=0, maximum=1)] = 0.0
    redeliver_rate: Annotated[float, documented(
        "with to or caller: bus only: the share of events read handed over again once, at "
        "the start of a later read", minimum=0, maximum=1)] = 0.0
    caller: Annotated[str | None, documented(
        "a program of your own that calls this service: act on its calls as they arrive "
        "at its door (its link to this service)", maxLength=64)] = None


class Trespass(msgspec.Struct, forbid_unknown_fields=True):
    """POST /chaos/trespass: whose database file to try to open."""

    into: Annotated[str, documented("another service of the sandbox", max_length=64)]
    how: Annotated[Literal["sqlite", "open", "ctypes", "child", "symlink", "hardlink"],
                   documented("the door tried: sqlite3.connect; open() + deserialize; libc "
                              "open through ctypes; cat in a child process; a symlink or a "
                              "hard link made in its own directory")] = "sqlite"


class Chaos:
    """What is injected now, the endpoint that changes it, and the middleware that does it."""

    def __init__(self, service: str, links: Links | None = None,
                 doors: Doors | None = None) -> None:
        self.service = service
        self.faults = Faults()  # on the requests this service answers
        # on its calls: shared with the service's Peers and bus, which act on them
        self.links = links if links is not None else Links(service)
        # on the calls of programs of your own, as they arrive (the bus reads them too)
        self.doors = doors if doors is not None else Doors(service, {})

    def answering(self) -> bool:
        """Whether the requests this service answers are delayed or failed."""
        f = self.faults
        return bool(f.latency_ms or f.jitter_ms or f.error_rate)

    def incoming(self) -> ChaosState | None:
        """The faults on the requests this service answers (None: none)."""
        f = self.faults
        if not self.answering():
            return None
        return {"latency_ms": f.latency_ms, "jitter_ms": f.jitter_ms,
                "error_rate": f.error_rate}

    def active(self) -> ChaosState | None:
        """Everything injected, for /health and `msshop status` (None: nothing)."""
        links, doors = self.links.report(), self.doors.report()
        state = self.incoming()
        if links or doors:
            state = state or {"latency_ms": 0.0, "jitter_ms": 0.0, "error_rate": 0.0}
        if state is not None and links:
            state["links"] = links
        if state is not None and doors:
            state["doors"] = doors
        return state

    async def endpoint(self, request: Request) -> Response:
        faults = await read_body(request, Faults)
        if faults.caller is not None:
            return self.at_door(faults)
        to = faults.to
        if to is not None and (to not in NAMES or to == self.service):
            others = ", ".join(n for n in NAMES if n != self.service)
            raise HttpError(422, f"to {to!r}: name another service of the sandbox ({others})")
        caller = BY_NAME.get(self.service)
        if to is not None and caller is not None and not caller.calls_others:  # a no-op
            raise HttpError(422, f"{self.service} calls no other service: put the link on "
                                 f"its caller, e.g. POST /chaos {{\"to\": \"{self.service}\"}} "
                                 "on query")
        if (name := delivery_fault(faults)) and to != BUS:
            raise HttpError(422, f"{name} is the bus handing out events: give it with "
                                 '"to": "bus"')
        if faults.clear:
            if to is None:
                self.faults = Faults()
                self.links.clear()
                self.doors.clear()
            else:
                self.links.set(to, None)
            return self.answer()
        check_values(faults)
        if to is None:
            self.faults = faults
        else:
            self.links.set(to, fault_of(faults))
        return self.answer()

    def at_door(self, faults: Faults) -> Response:
        """POST /chaos with `caller`: the faults on that program's link to this service."""
        caller = faults.caller
        if caller not in self.doors.ports:
            doors = ", ".join(self.doors.ports) or "none runs here"
            raise HttpError(422, f"caller {caller!r}: name a program of your own that calls "
                                 f"{self.service} through a door ({doors}); for msshop's own "
                                 f"services, POST /chaos {{\"to\": \"{self.service}\"}} on "
                                 "the caller")
        if faults.to is not None:
            raise HttpError(422, "give caller or to, not both: caller is a link into this "
                                 "service, to a link out of it")
        if (name := delivery_fault(faults)) and keeps_doors_of(self.service) != BUS:
            raise HttpError(422, f"{name} is the bus handing out events: give it to the bus")
        check_values(faults)
        self.doors.set(caller, None if faults.clear else fault_of(faults))
        # ChaosAnswer's shape, as documented: `chaos.doors` holds the doors' faults
        return json_response({"service": self.service, "chaos": self.active(),
                              "links": self.links.report()})

    def answer(self) -> Response:
        return json_response({"service": self.service, "chaos": self.incoming(),
                              "links": self.links.report()})

    async def trespass(self, request: Request) -> Response:
        body = await read_body(request, Trespass)
        into = body.into
        if into not in NAMES or into == self.service:
            others = ", ".join(n for n in NAMES if n != self.service)
            raise HttpError(422, f"into {into!r}: name another service ({others})")
        try:
            tried, by, refused = trespass(into, body.how)
        except RuntimeError as exc:
            raise HttpError(500, str(exc)) from None
        log.warning("trespass, on purpose: %s", refused)
        return json_response({"service": self.service, "into": into, "tried": tried,
                              "refused": refused, "how": body.how, "by": by})


def delivery_fault(faults: Faults) -> str | None:
    """The first delivery fault given (a bus-only one), by name; None: none."""
    return next((name for name in ("duplicate_rate", "reorder_rate", "redeliver_rate")
                 if getattr(faults, name)), None)


def fault_of(faults: Faults) -> LinkFault:
    return link_fault(faults.latency_ms, faults.jitter_ms, faults.error_rate,
                      faults.duplicate_rate, faults.reorder_rate, faults.redeliver_rate)


def check_values(faults: Faults) -> None:
    for name, value, high in (("latency_ms", faults.latency_ms, MAX_DELAY_MS),
                              ("jitter_ms", faults.jitter_ms, MAX_DELAY_MS),
                              ("error_rate", faults.error_rate, 1),
                              ("duplicate_rate", faults.duplicate_rate, 1),
                              ("reorder_rate", faults.reorder_rate, 1),
                              ("redeliver_rate", faults.redeliver_rate, 1)):
        if not 0 <= value <= high:
            raise HttpError(422, f"{name} {value} must be from 0 to {high}")


class ChaosMiddleware:
    """Delays and fails requests as the service's Chaos says (pure ASGI), but those to a
    route declared with chaos=False; and every request that arrives on a door with a fault
    as that door's link says (what a caller of ours would have done before sending it)."""

    def __init__(self, app: ASGIApp, chaos: Chaos) -> None:
        self.app = app
        self.chaos = chaos

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chaos = self.chaos
        if chaos.doors.faulty and scope["type"] == "http":
            refused = await chaos.doors.cross((scope.get("server") or ("", 0))[1])
            if refused is not None:
                await json_response({"error": refused, "status": 503,
                                     "service": chaos.service}, 503)(scope, receive, send)
                return
        route: Operation | None = scope.get(ROUTE)
        if scope["type"] != "http" or not chaos.answering() or (
                route is not None and not route.chaos):
            await self.app(scope, receive, send)
            return
        f = chaos.faults
        delay = f.latency_ms + (random.uniform(0, f.jitter_ms) if f.jitter_ms else 0)
        if delay:
            await asyncio.sleep(delay / 1000)
        if f.error_rate and random.random() < f.error_rate:
            body: dict[str, Any] = {"error": f"chaos: {chaos.service} failed on purpose "
                                             f"(error rate {f.error_rate:g}); clear it with: "
                                             f"msshop chaos {chaos.service} --clear",
                                    "status": 503, "service": chaos.service}
            await json_response(body, 503)(scope, receive, send)
            return
        await self.app(scope, receive, send)
