"""No client can starve a service of connections: a deadline to send a request, a cap on the
connections held, and the file-descriptor limit raised as far as it goes.

Without them, ~1,000 connections opened and left idle took every descriptor a service had
(a soft limit of 1,024 is common): libuv then accepts each new connection and closes it at
once, so everyone was refused, the service logged nothing, and `status` called it down.

What each connection may do:
- send a whole request (headers and body) within `request_timeout` seconds of opening the
  connection or of its request's first byte: one that sends nothing, or trickles, is
  closed. A request once read may run as long as it needs (the bus's long-poll holds one
  up to 30 s; a slow answer is the caller's timeout to judge, not this one's);
- stay idle between requests `keep_alive` seconds (uvicorn's own keep-alive timer);
- be one of at most `cap` connections. At the cap a new connection makes room by closing
  the connections longest idle or still sending the head of their request (a flood's:
  none of them has begun a request, so nothing is lost); when no connection is such, the
  new one is answered 503 and closed.

Cost on the hot path: none per request. The deadline is kept by a sweep from the server's
tick (runner.PromptServer), which reads uvicorn's own per-connection state (its request
cycle and its keep-alive timer) every SWEEP seconds; the cap is one length check per
connection opened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar, cast

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from msshop.contracts.config import ConnectionLimits

log = logging.getLogger("msshop.connections")

SWEEP = 0.5  # seconds between looks at the connections (the deadline's precision)
QUIET = 5.0  # seconds without a connection closed or refused that end a burst
FRESH = object()  # the mark of a connection that has not yet begun a request


class ConnectionGuard:
    """The deadlines and the cap of one service's server, and the words it logs: one line
    when a burst begins to be closed or refused (per kind), one when it has passed."""

    def __init__(self, service: str, limits: ConnectionLimits, cap: int) -> None:
        self.service = service
        self.limits = limits
        self.cap = cap
        self.connections: set[Any] = set()  # uvicorn's server_state.connections, once bound
        self.time: Callable[[], float] = lambda: 0.0  # the loop's clock, once bound
        self.refusal = _refusal(service, cap)
        self.in_burst = False
        self.last_event = 0.0
        self.counts = {"late": 0, "made_room": 0, "refused": 0}

    def bind(self, connections: set[Any], time: Callable[[], float]) -> None:
        self.connections = connections
        self.time = time

    # at the cap
    def admit(self, newcomer: GuardedProtocol) -> None:
        """A connection was just opened (it is counted): make room if it is one too many."""
        if len(self.connections) <= self.cap:
            return
        now = self.time()
        unbegun = sorted((c for c in self.connections if c is not newcomer
                          and c.before_a_request()),
                         key=lambda c: c.since if c.mark is not None else now)
        if not unbegun:  # every other connection has a request running: none is idle
            self._event("refused", now)
            newcomer.transport.write(self.refusal)
            newcomer.transport.close()
            return
        # a quarter of them at once, so a flood does not sort on every connection
        closing = unbegun[:max(1, len(unbegun) // 4)]
        for connection in closing:
            connection.transport.close()
        self._event("made_room", now, len(closing))

    # every SWEEP seconds
    def sweep(self) -> None:
        """Close the connections that have not sent their request in time; end a burst."""
        now = self.time()
        deadline = self.limits.request_timeout
        late = 0
        for connection in list(self.connections):  # (closing one may remove it)
            mark = connection.waiting_mark()
            if mark is None:  # a request running, or idle under uvicorn's keep-alive timer
                connection.mark = None
            elif connection.mark is not mark:  # first seen waiting for this request
                connection.mark, connection.since = mark, now
            elif now - connection.since >= deadline and not connection.transport.is_closing():
                connection.transport.close()
                late += 1
        if late:
            self._event("late", now, late)
        elif self.in_burst and now - self.last_event >= QUIET \
                and len(self.connections) < self.cap:
            self.end_burst()

    def _event(self, kind: str, now: float, count: int = 1) -> None:
        first = self.counts[kind] == 0
        self.counts[kind] += count
        self.in_burst, self.last_event = True, now
        if not first:
            return  # once per burst
        if kind == "late":
            log.warning("%s closes connections that send no complete request within %g s "
                        "(idle or trickling clients); counting them until it stops",
                        self.service, self.limits.request_timeout)
        elif kind == "made_room":
            log.warning("%s has %d connections open, the most it takes (the setting "
                        "connections.max_connections, or its file-descriptor limit): it "
                        "closes those idle longest to take new ones; counting until it stops",
                        self.service, self.cap)
        else:
            log.warning("%s has %d connections open, the most it takes, each with a request "
                        "under way: it answers new ones 503; counting until it stops",
                        self.service, self.cap)

    def end_burst(self) -> None:
        """Say what the burst did, once it has passed (or the service stops during it)."""
        if not self.in_burst:
            return
        counts = self.counts
        log.info("%s: the burst of connections has passed: %d closed for sending no request "
                 "in time, %d closed to make room, %d refused; %d open now", self.service,
                 counts["late"], counts["made_room"], counts["refused"],
                 len(self.connections))
        self.in_burst = False
        self.counts = dict.fromkeys(counts, 0)


def _refusal(service: str, cap: int) -> bytes:
    body = msgspec.json.encode({
        "error": f"{service} has {cap} connections open, each with a request under way, the "
                 f"most it takes; try again shortly",
        "status": 503, "service": service})
    return (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n"
            b"retry-after: 1\r\n\r\n" + body)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol under a ConnectionGuard (one subclass per server: guarded)."""

    guard: ClassVar[ConnectionGuard]
    mark: object = None  # what the sweep last saw it wait for (None: not waiting)
    since = 0.0  # when the sweep first saw it waiting for that

    def connection_made(self, transport: Any) -> None:  # uvicorn's signature differs
        super().connection_made(transport)
        self.guard.admit(self)

    def waiting_mark(self) -> object | None:
        """What this connection waits for the client to send, as an object that changes
        with each request (its first byte, or all of it, not yet read); None when a request
        is running or the connection is idle between requests (uvicorn's keep-alive timer
        runs)."""
        if self.timeout_keep_alive_task is not None:
            return None
        cycle = cast("RequestResponseCycle | None", self.cycle)  # None before the first
        if cycle is None:
            return FRESH
        if cycle.response_complete:  # the next request
            return cycle
        if cycle.more_body and not self.flow.read_paused:  # this request's body
            return cycle.message_event  # (paused: the app has yet to read what came)
        return None

    def before_a_request(self) -> bool:
        """Idle, or the head of its request not all read: no request has begun, so closing
        it loses no answer and cuts no work short. (One still sending its body is left to
        the deadline: its request has begun.)"""
        if self.transport.is_closing():
            return False
        cycle = cast("RequestResponseCycle | None", self.cycle)
        return cycle is None or cycle.response_complete


def guarded(guard: ConnectionGuard) -> type[GuardedProtocol]:
    """The protocol class for uvicorn's Config(http=...), bound to this guard."""
    return cast(type[GuardedProtocol],
                type("GuardedProtocol", (GuardedProtocol,), {"guard": guard}))
