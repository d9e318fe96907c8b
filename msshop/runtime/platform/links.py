"""Faults on a service's own calls to one other service (a link, caller -> callee), e.g. a
partition between the query service and the bus while everything else keeps talking.

One `Links` per service process, held by its ServiceContext: POST /chaos with `to` changes
it (chaos.py), and the two ways a service calls out act on it: Peers before each HTTP call
(peers.py), and `LinkedBus` around whatever bus the context made (NATS or the log). The
log bus reaches the bus through Peers too; that exchange tells Peers not to apply the
link again.

A caller that is not msshop's (a program of your own run as a service) has none of this in
it, so its links are kept by the callees instead (`Doors`): each of our services it calls
listens on one more port for it alone, its door, which is the URL its service.json gives
for that callee; what arrives there takes the link's faults before it is answered, as a
call of our own would before it is sent. The same `Links` do it, one per door, so the
words, the limits and `msshop chaos query --to users` are the same either way. The log
bus hands a reader's events over again, late or reordered by `Misdelivery`, as LinkedBus
does for ours.

Three delivery faults, each one idea a consumer must survive (a rung of the challenges):
`duplicate_rate` (a share of events handed again in a later page, shuffled among its
events: duplicates, lateness and disorder at once), `redeliver_rate` (handed again once,
at the start of the next page, in order: late redelivery alone) and `reorder_rate` (within
a page, a share of the aggregates with several updates there get them newest first:
disorder alone, nothing twice). In every case the page's last event stays last.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Generic, TypeVar

import msgspec

from msshop.bus.interface import Bus, BusUnavailable, Page
from msshop.contracts.events import Delivered
from msshop.contracts.status import (
    LinkFault,
    link_fault as link_fault,  # re-exported: the Links code and its tests name it here
)

BUS = "bus"
REDELIVERY_BUFFER = 1000  # events held for handing over again: a bounded memory
# with a reorder rate, a long-polling reader's page is gathered this long after it is
# woken, so that updates appended one by one arrive together, with something to reorder
REORDER_GATHER = 0.1
Item = TypeVar("Item")


class Links:
    """The faults on one service's calls, by callee. Only links with a fault are kept, so a
    call on a healthy link costs one dict lookup."""

    def __init__(self, caller: str, rng: random.Random | None = None) -> None:
        self.caller = caller
        self._faults: dict[str, LinkFault] = {}
        self._random = rng or random.Random()
        # the calls made to each callee since the process started (GET /health's `calls`:
        # the dashboard draws each link's calls a second from it)
        self.calls: dict[str, int] = {}

    def set(self, callee: str, fault: LinkFault | None) -> None:
        """From now on, `fault` on the calls to `callee` (None, or all zeros: none)."""
        if fault is None or not any(fault.values()):
            self._faults.pop(callee, None)
        else:
            self._faults[callee] = fault

    def clear(self) -> None:
        self._faults.clear()

    def report(self) -> dict[str, LinkFault]:
        """Every link with a fault (copies: the caller may keep or change them)."""
        return {callee: fault.copy() for callee, fault in self._faults.items()}

    def duplicate_rate(self, callee: str) -> float:
        fault = self._faults.get(callee)
        return fault["duplicate_rate"] if fault else 0.0

    def fault(self, callee: str) -> LinkFault | None:
        """The faults on the calls to `callee` (None: none): read, not to be changed."""
        return self._faults.get(callee)

    async def cross(self, callee: str) -> str | None:
        """Before a call to `callee`: wait the link's latency, then the one line to fail the
        call with if it is to fail (None: it goes through)."""
        self.calls[callee] = self.calls.get(callee, 0) + 1
        fault = self._faults.get(callee)
        if fault is None:
            return None
        jitter = fault["jitter_ms"]
        delay = fault["latency_ms"] + (self._random.uniform(0, jitter) if jitter else 0)
        if delay:
            await asyncio.sleep(delay / 1000)
        rate = fault["error_rate"]
        if not rate or self._random.random() >= rate:
            return None
        how = ("a partition on purpose" if rate >= 1
               else f"{rate:.0%} of its calls fail on purpose")
        return (f"chaos: {self.caller} cannot reach {callee} ({how}); clear it with: "
                f"msshop chaos {self.caller} --to {callee} --clear")


class Redelivery(Generic[Item]):
    """A share of the events read handed over again in a later read, shuffled among its
    events (duplicates, redelivery and disorder at once), but never after its last.

    The page's last event stays last: a consumer stores the last position it was handed as
    its own, so that position advances exactly as the bus says. A re-delivery is an older
    event, which the read model's per-aggregate versions make harmless.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = rng or random.Random()
        self._again: deque[Item] = deque(maxlen=REDELIVERY_BUFFER)

    def clear(self) -> None:
        """Nothing held is handed over any more (the fault cleared, or another log)."""
        self._again.clear()

    def mixed(self, events: list[Item], rate: float) -> list[Item]:
        return self.mixed_again(events, rate)[0]

    def mixed_again(self, events: list[Item], rate: float) -> tuple[list[Item], list[Item]]:
        """The page as handed, and which of its items are handed again."""
        if not events:  # nothing to hide them among, and no last event to keep last
            return events, []
        again = list(self._again)
        self._again.clear()
        self._again.extend(e for e in events if self._random.random() < rate)
        *mixed, last = events
        mixed += again
        self._random.shuffle(mixed)
        return [*mixed, last], again


class Misdelivery(Generic[Item]):
    """A reader's delivery faults (the module's three), applied to each page it reads;
    `handed` also says which items went out of the ordinary, and how (for the journal).
    `aggregate`: an item's aggregate, or None for an item that is nobody's update."""

    def __init__(self, aggregate: Callable[[Item], Hashable | None],
                 rng: random.Random | None = None) -> None:
        self._random = rng or random.Random()
        self._aggregate = aggregate
        self._duplicates: Redelivery[Item] = Redelivery(self._random)
        self._late: deque[Item] = deque(maxlen=REDELIVERY_BUFFER)

    def clear(self) -> None:
        self._duplicates.clear()
        self._late.clear()

    def handed(self, events: list[Item], fault: LinkFault
               ) -> tuple[list[Item], list[tuple[Item, str]]]:
        """(the page as handed, each item handed out of the ordinary with its fault:
        "reordered", "redelivered", "duplicate")."""
        odd: list[tuple[Item, str]] = []
        if not events:  # nothing to put them before, and no last event to keep last
            return events, odd
        page = events
        if reorder := fault.get("reorder_rate", 0.0):
            page = self._reordered(page, reorder, odd)
        if redeliver := fault.get("redeliver_rate", 0.0):
            late = list(self._late)
            self._late.clear()
            self._late.extend(e for e in events if self._random.random() < redeliver)
            odd += [(e, "redelivered") for e in late]
            page = [*late, *page]
        if fault["duplicate_rate"]:
            page, again = self._duplicates.mixed_again(page, fault["duplicate_rate"])
            odd += [(e, "duplicate") for e in again]
        return page, odd

    def _reordered(self, events: list[Item], rate: float, odd: list[tuple[Item, str]]
                   ) -> list[Item]:
        """Each aggregate with more than one update in the page (its last event aside),
        at `rate`, has them handed in its slots newest first."""
        slots: dict[Hashable, list[int]] = {}
        for index, item in enumerate(events[:-1]):
            key = self._aggregate(item)
            if key is not None:
                slots.setdefault(key, []).append(index)
        page = list(events)
        for indexes in slots.values():
            if len(indexes) > 1 and self._random.random() < rate:
                for index, source in zip(indexes, reversed(indexes), strict=True):
                    page[index] = events[source]
                    odd.append((events[source], "reordered"))
        return page


class Envelope(msgspec.Struct):
    """The fields of an event that its delivery faults and their journal read."""

    type: str
    aggregate_type: str
    aggregate_id: int
    aggregate_version: int


envelope_of = msgspec.json.Decoder(Envelope).decode


def delivered_aggregate(item: Delivered) -> tuple[str, int] | None:
    try:
        envelope = envelope_of(item.event)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # not an event (a poison): nobody's update
    return envelope.aggregate_type, envelope.aggregate_id


def delivery_faults(fault: LinkFault) -> bool:
    """Whether the link's faults change what a reader is handed."""
    return bool(fault["duplicate_rate"] or fault.get("reorder_rate")
                or fault.get("redeliver_rate"))


class LinkedBus:
    """A Bus with its service's faults on the link to the bus: latency and failures on every
    call (BusUnavailable, as an unreachable bus), and with a delivery fault (duplicates,
    late redelivery, reorder), the pages read handed as Misdelivery says."""

    def __init__(self, bus: Bus, links: Links, rng: random.Random | None = None) -> None:
        self.bus = bus
        self.links = links
        self._again: Misdelivery[Delivered] = Misdelivery(delivered_aggregate, rng)
        self._again_log = ""  # the log those events are from: never mix two logs

    async def start(self) -> None:
        await self.bus.start()

    async def close(self) -> None:
        await self.bus.close()

    async def append(self, events: Sequence[bytes]) -> list[int]:
        await self._cross()
        return await self.bus.append(events)

    async def read(self, after: int, limit: int, wait: float = 0.0,
                   types: frozenset[str] | None = None) -> Page:
        await self._cross()
        page = await self.bus.read(after, limit, wait, types)
        fault = self.links.fault(BUS)
        if fault is None or not delivery_faults(fault):
            self._again.clear()  # cleared: what was held is not handed over any more
            return page
        if page.log != self._again_log:  # a replaced log: its old events mean nothing now
            self._again.clear()
            self._again_log = page.log
        if fault.get("reorder_rate") and wait and page.events and len(page.events) < limit:
            await asyncio.sleep(REORDER_GATHER)  # as the log bus gathers a reader's page
            more = await self.bus.read(page.events[-1].position, limit - len(page.events),
                                       types=types)
            if more.log == page.log:
                page = Page(max(page.head, more.head), [*page.events, *more.events], page.log,
                            more.through)
        return Page(page.head, self._again.handed(page.events, fault)[0], page.log,
                    page.through)

    async def head(self) -> int:
        await self._cross()
        return await self.bus.head()

    async def _cross(self) -> None:
        refused = await self.links.cross(BUS)
        if refused is not None:
            raise BusUnavailable(refused)


class Doors:
    """The links of the callers that are not msshop's, kept by the callee they call: by
    caller, its door's port and the faults on what arrives there (one Links each, whose
    only callee is this service). Read on each request only while a door has a fault."""

    def __init__(self, callee: str, ports: Mapping[str, int],
                 rng: random.Random | None = None) -> None:
        self.callee = callee
        self.ports = dict(ports)  # caller -> its door's port
        self.caller_at = {port: caller for caller, port in self.ports.items()}
        self._links = {caller: Links(caller, rng) for caller in self.ports}
        self.faulty = False  # any door with a fault: the fast path's one check
        # told the caller whose link changed: a door that holds connections open (the NATS
        # bus's) closes them on a partition, where an HTTP door refuses the next request
        self._watchers: list[Callable[[str], None]] = []

    def watch(self, changed: Callable[[str], None]) -> None:
        self._watchers.append(changed)

    def set(self, caller: str, fault: LinkFault | None) -> None:
        self._links[caller].set(self.callee, fault)
        self.faulty = any(links.report() for links in self._links.values())
        for changed in self._watchers:
            changed(caller)

    def clear(self) -> None:
        for links in self._links.values():
            links.clear()
        self.faulty = False
        for caller in self.ports:
            for changed in self._watchers:
                changed(caller)

    def report(self) -> dict[str, LinkFault]:
        """Each door with a fault: its caller's link to this service."""
        return {caller: fault for caller, links in self._links.items()
                for fault in links.report().values()}

    def duplicate_rate(self, caller: str) -> float:
        links = self._links.get(caller)
        return links.duplicate_rate(self.callee) if links is not None else 0.0

    def fault(self, caller: str) -> LinkFault | None:
        """The faults on `caller`'s link here (None: none)."""
        links = self._links.get(caller)
        return links.fault(self.callee) if links is not None else None

    async def cross(self, port: int) -> str | None:
        """A request arrived on `port`: if that is a door, its link's latency, then the one
        line to fail it with if it is to fail (None: it is answered)."""
        caller = self.caller_at.get(port)
        if caller is None:
            return None
        return await self._links[caller].cross(self.callee)
