"""Fault injection: make a running service slow or failing, on demand, without a restart.

    POST /chaos  {"latency_ms", "jitter_ms", "error_rate"} | {"clear": true}
                 header authorization: Bearer <the sandbox's token>  (401 without, 403 wrong)
    POST /chaos/trespass  {"into": "<service>"}: the service tries to open that service's
                 database file, as a bug would, so that the isolation guard's refusal is
                 seen (answered and logged; nothing is opened)

The token is the one in the sandbox's state file (mode 0600): only the sandbox's owner can
read it, so only they can break their services. Faults apply to every request but
/health, /spans, /chaos and /openapi.json, so the supervisor and `msshop status` keep
seeing the service (and `status` shows what is injected).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from msshop.contracts.topology import NAMES
from msshop.runtime.platform.db import trespass
from msshop.runtime.platform.http import HttpError, json_response, read_body, require_token
from msshop.runtime.platform.openapi import documented

log = logging.getLogger("msshop.chaos")

EXEMPT = frozenset({"/health", "/spans", "/chaos", "/chaos/trespass", "/openapi.json"})
MAX_DELAY_MS = 60_000


class Faults(msgspec.Struct, forbid_unknown_fields=True):
    """What POST /chaos injects from now on (each left out: 0), or `clear` for none."""

    latency_ms: Annotated[float, documented("added to every request", minimum=0,
                                            maximum=MAX_DELAY_MS)] = 0.0
    jitter_ms: Annotated[float, documented("up to this much more, at random", minimum=0,
                                           maximum=MAX_DELAY_MS)] = 0.0
    error_rate: Annotated[float, documented("the share of requests failed with a 503",
                                            minimum=0, maximum=1)] = 0.0
    clear: Annotated[bool, documented("remove every fault")] = False


class Trespass(msgspec.Struct, forbid_unknown_fields=True):
    """POST /chaos/trespass: whose database file to try to open."""

    into: Annotated[str, documented("another service of the sandbox", max_length=64)]


class Chaos:
    """What is injected now, the endpoint that changes it, and the middleware that does it."""

    def __init__(self, service: str, admin: str | None) -> None:
        self.service = service
        self.admin = admin  # the digest of the sandbox's token
        self.faults = Faults()

    def active(self) -> dict[str, float] | None:
        f = self.faults
        if not (f.latency_ms or f.jitter_ms or f.error_rate):
            return None
        return {"latency_ms": f.latency_ms, "jitter_ms": f.jitter_ms,
                "error_rate": f.error_rate}

    async def endpoint(self, request: Request) -> Response:
        require_token(request, self.admin, "chaos")
        faults = await read_body(request, Faults)
        if faults.clear:
            faults = Faults()
        for name, value, high in (("latency_ms", faults.latency_ms, MAX_DELAY_MS),
                                  ("jitter_ms", faults.jitter_ms, MAX_DELAY_MS),
                                  ("error_rate", faults.error_rate, 1)):
            if not 0 <= value <= high:
                raise HttpError(422, f"{name} {value} must be from 0 to {high}")
        self.faults = faults
        return json_response({"service": self.service, "chaos": self.active()})

    async def trespass(self, request: Request) -> Response:
        require_token(request, self.admin, "trespass")
        into = (await read_body(request, Trespass)).into
        if into not in NAMES or into == self.service:
            others = ", ".join(n for n in NAMES if n != self.service)
            raise HttpError(422, f"into {into!r}: name another service ({others})")
        try:
            tried, refused = trespass(into)
        except RuntimeError as exc:
            raise HttpError(500, str(exc)) from None
        log.warning("trespass, on purpose: %s", refused)
        return json_response({"service": self.service, "into": into, "tried": tried,
                              "refused": refused})


class ChaosMiddleware:
    """Delays and fails requests as the service's Chaos says (pure ASGI)."""

    def __init__(self, app: ASGIApp, chaos: Chaos) -> None:
        self.app = app
        self.chaos = chaos

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chaos = self.chaos
        if scope["type"] != "http" or scope["path"] in EXEMPT or not chaos.active():
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
