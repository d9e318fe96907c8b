"""The dashboard's feed of events (issue 28, "Watch it"): the bus's events as they arrive.

While at least one tab watches, one task follows the bus with the reader every consumer
uses (msshop.bus's `Bus`: the sandbox's log, or NATS JetStream), signed in with the
dashboard's own credential, which may read the bus and nothing more (the log bus takes no
append from it; on a managed nats bus the `ui` user may publish no event subject and may
not make, change or delete the stream: broker.dashboard_reader). With `bus.url` every part
signs in with that URL's user, the feed too.

- It starts at the head when a tab starts watching, not at position 0 (a seeded log holds
  hundreds of thousands of events), and long-polls from there.
- It keeps the last KEPT events in memory (the dashboard keeps nothing on disk), each as an
  EventView: what a line of the page shows.
- It reads at most one page (KEPT events) every GAP, a look's interval, whatever the
  rate: watching costs the bus at most four reads a second, and a page could show no
  event sooner than its next look anyway. Under a load faster than that it falls
  behind, and once it is more than BEHIND events behind the head it skips to the last KEPT
  (`dropped` counts what it skipped). Not at once: on nats a read from another position
  makes a new consumer, and the server has pushed those events to the dashboard already.
- Nobody watching: nothing is read, and its connection to a nats bus is closed (no
  consumer of its own on the server).
- The bus down: it waits and tries again (backoff.py), and says why in `problem` (one line,
  in the Snapshot and /health; no traceback in the log).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from msshop.bus.interface import Bus, BusUnavailable, Page
from msshop.contracts.events import OWNERS, Delivered, receive
from msshop.contracts.topology import SERVICES
from msshop.runtime.platform.backoff import Backoff
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.tasks import Task, cause_of
from msshop.runtime.services.dashboard.guard import Refused

log = logging.getLogger("msshop.ui")

KEPT = 200  # events kept in memory, the newest
SHOWN = 50  # of which each Snapshot carries the newest
WAIT = 1.0  # seconds a read is held for new events: how late the feed sees nobody watches
GAP = 0.25  # seconds between two reads that brought events (gather.py's INTERVAL): their
# batches gather meanwhile
BEHIND = 2_000  # events behind the head beyond which the feed skips to the newest KEPT
IDLE = 0.2  # seconds between two checks, while nobody watches, whether a tab does
SUMMARY = 120  # characters of an event's data shown on its line, at most
#: whoever may write events: the sources a filter may name
SOURCES = tuple(spec.name for spec in SERVICES if spec.publishes)


class EventView(msgspec.Struct, frozen=True):
    """One event as a line of the page shows it."""

    position: int
    type: str
    source: str  # who sent it (on nats: the subject it came on, which names its sender)
    aggregate_id: int
    at: float  # unix seconds: when it occurred at its source
    summary: str  # its data on one line, at most SUMMARY characters


class FeedHealth(msgspec.Struct):
    """The feed as /health shows it."""

    state: str  # idle (nobody watches: no reads) | following | waiting (the bus is down)
    reads: int  # reads of the bus since the dashboard started
    position: int | None  # the last position read (None: idle)
    kept: int
    dropped: int
    problem: str | None


def summary_of(data: Any) -> str:
    """An event's data on one line: `key=value …`, cut at SUMMARY characters."""
    if isinstance(data, dict):
        text = " ".join(f"{key}={_short(value)}" for key, value in data.items())
    else:
        text = _short(data)
    return text if len(text) <= SUMMARY else text[:SUMMARY - 1] + "…"


def _short(value: Any) -> str:
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def view_of(delivered: Delivered) -> EventView:
    """The line of a delivered event; one the bus holds that is not an event says so."""
    try:
        event = receive(delivered.event)
        data = msgspec.json.decode(event.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return EventView(delivered.position, "?", delivered.sender or "?", 0, 0.0,
                         summary_of(f"not an event: {exc}"))
    return EventView(delivered.position, event.type, delivered.sender or event.source,
                     event.aggregate_id, event.occurred_at, summary_of(data))


class Feed:
    """The bus followed while someone watches (`watching()` > 0), its last KEPT events."""

    def __init__(self, ctx: ServiceContext, watching: Callable[[], int]) -> None:
        # its reader of the bus, signed in as the dashboard: on the log bus through the
        # services' own client (with the dashboard's credential), on nats as user `ui`
        self._ctx = ctx
        self._peers = ctx.peers()
        self._watching = watching
        self._bus: Bus | None = None
        self._task: Task | None = None
        self._backoff = Backoff()
        self.kept: deque[EventView] = deque(maxlen=KEPT)
        self.position: int | None = None  # the last position read; None: start at the head
        self.log = ""  # the log being read: another (replaced, emptied) starts at its head
        self.head: int | None = None  # the bus's head, as its last answer said
        self.dropped = 0  # events skipped: they came faster than the page could show them
        self.reads = 0
        self.problem: str | None = None  # why the feed has nothing new (the bus is down)

    async def start(self) -> None:
        await self._peers.start()
        self._task = self._ctx.tasks.run("events", self._run)

    async def close(self) -> None:
        if self._task is not None:
            await self._task.stop()
        await self._rest()
        await self._peers.close()

    def newest(self, count: int = SHOWN) -> list[EventView]:
        kept = self.kept
        return list(kept)[-count:] if count < len(kept) else list(kept)

    def health(self) -> FeedHealth:
        state = ("waiting" if self.problem is not None else
                 "following" if self.position is not None else "idle")
        return FeedHealth(state, self.reads, self.position, len(self.kept), self.dropped,
                          self.problem)

    async def _run(self) -> None:
        while True:
            if not self._watching():
                await self._rest()
                await asyncio.sleep(IDLE)
                continue
            try:
                await self._follow()
            except BusUnavailable as exc:
                self._unavailable(exc.message)
                await self._drop_bus()  # one that comes back: a new connection, consumer
                await self._backoff.wait()
            except Exception as exc:  # a bug: the supervisor logs it and starts it again
                self.problem = f"the feed failed: {cause_of(exc)}; see: msshop logs ui"
                raise

    async def _follow(self) -> None:
        """Read from the head on, as long as a tab watches."""
        if self._bus is None:
            self._bus = self._ctx.bus(self._peers)
            await self._bus.start()
        bus = self._bus
        if self.position is None:
            self.position = self.head = await bus.head()
            self.log = ""
        while self._watching():
            page = await bus.read(self.position, KEPT, WAIT)
            self.reads += 1
            self._working()
            self._took(page)
            if page.events:
                await asyncio.sleep(GAP)

    def _took(self, page: Page) -> None:
        assert self.position is not None
        if self.log and page.log and page.log != self.log:  # another log: from its head
            log.info("the bus holds another log now; the feed follows it from its head")
            self.position = page.head
        self.log = page.log or self.log
        self.head = page.head
        for delivered in page.events:
            if delivered.position > self.position:
                self.kept.append(view_of(delivered))
                self.position = delivered.position
        if page.head - self.position > BEHIND:  # far behind: skip what no page would show
            self.dropped += page.head - KEPT - self.position
            self.position = page.head - KEPT

    def _working(self) -> None:
        if self.problem is not None:
            log.info("the feed of events reads the bus again")
        self.problem = None
        self._backoff.reset()

    def _unavailable(self, why: str) -> None:
        problem = f"the bus cannot be read ({why}); trying again"
        if problem != self.problem:
            log.warning("feed of events: %s", problem)  # once per cause, one line
        self.problem = problem

    async def _rest(self) -> None:
        """Nobody watches: no reads, no connection; the next tab starts at the head."""
        self.position = None
        self.problem = None
        await self._drop_bus()

    async def _drop_bus(self) -> None:
        bus, self._bus = self._bus, None
        if bus is None:
            return
        try:
            await bus.close()
        except Exception as exc:  # a connection already gone: nothing to undo
            log.debug("feed of events: closing the bus: %s", cause_of(exc))


def filtered(kept: Iterable[EventView], types: str | None, sources: str | None,
             limit: str | None) -> list[EventView]:
    """GET /events: the kept events of these types and sources (comma-separated; None:
    any), the newest `limit` (1 to KEPT), oldest first; a filter that names a type or
    source nobody knows, or a bad limit, is refused with one line (422)."""
    kept = list(kept)
    wanted_types = _names("type", types, {*OWNERS, *(v.type for v in kept)})
    wanted_sources = _names("source", sources, {*SOURCES, *(v.source for v in kept)})
    try:
        count = int(limit) if limit is not None else KEPT
    except ValueError:
        count = 0
    if not 1 <= count <= KEPT:
        raise Refused(422, f"limit is a whole number from 1 to {KEPT}, not {limit!r}")
    chosen = [v for v in kept if (wanted_types is None or v.type in wanted_types)
              and (wanted_sources is None or v.source in wanted_sources)]
    return chosen[-count:]


def _names(what: str, asked: str | None, known: set[str]) -> set[str] | None:
    if asked is None:
        return None
    names = {name.strip() for name in asked.split(",")}
    unknown = sorted(names - known)
    if unknown:
        raise Refused(422, f"no event {what} {unknown[0]!r}; known: " + ", ".join(
            sorted(known)))
    return names
