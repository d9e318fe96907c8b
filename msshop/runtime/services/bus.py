"""The bus: an append-only event log in its own SQLite file. Owns bus.db only.

    POST /events   [event, ...]  -> {"positions": [...], "appended": n, "head"}
                   only users, products and orders, each with its own credential
                   (authorization: Bearer …), and only events whose source is the sender
    GET  /events?after=P&limit=N&wait_ms=W[&types=T,U]
                   -> {"head", "log", "through", "events": [{"position", "event"}]}
                   any service's credential, the dashboard's (its feed: it only
                   reads), or the sandbox's token (msshop events);
                   with `types`, only events of those types, looked for in at most
                   SCAN positions; `through`: every event up to it was looked at
    GET  /chaos/deliveries?reader=R&limit=N  -> {"reader", "entries", "kept", "dropped"}
                   the owner's token: what the delivery faults handed reader R out of the
                   ordinary (the delivery journal: evidence for a checker)

Append is idempotent by (source, event id): an event sent twice (a relay that died between
the bus's answer and marking its row sent) keeps its first position, and no caller can
pre-empt another service's ids. Each event gets the next global position. `log` is the
log's identity, made with bus.db: a consumer that meets another log (bus.db replaced or
emptied) can tell, instead of waiting for positions that will not come. Readers pull from
a position of their own; with `wait_ms`, a reader with nothing new is held until an
append wakes it (long-poll), so delivery takes no polling interval.

A reader of a few types (a saga's step consumer: `types=`) is handed only those, and
`through` says how far the bus looked, so that it moves its position past the rest
without reading them. Its long-poll answers at once when one of its types is appended;
woken by appends of other types only, it is held TYPED_GATHER more (0.1 s), then
answered with nothing but `through` at the head: its position then reaches the head, as
`msshop wait`'s "caught up" counts it, at most that late (held until one of its types
arrived, a reader with nothing to do would sit behind the head for its whole wait;
answered on every append, three step consumers were woken by every purchase).

Why pull: a subscriber that is down misses nothing and needs no retry queue here; it asks
again from its stored position when it is back. The interface (msshop.bus) is what NATS
JetStream or Kafka give, so either could take this one's place.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from msshop.contracts.events import Appended, Event, EventPage, not_its_owner
from msshop.contracts.limits import MAX_BATCH, MAX_ID
from msshop.contracts.status import DeliveryJournal
from msshop.contracts.topology import PARTS
from msshop.runtime.platform.app import ServiceApp, service_app
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.db import StartupFailed, transaction
from msshop.runtime.platform.http import HttpError, json_response, read_json
from msshop.runtime.platform.journal import (
    JOURNAL_SIZE as JOURNAL_SIZE,  # re-exported: its tests name it here
    DeliveryJournals,
    journal_endpoint,
)
from msshop.runtime.platform.links import (
    REORDER_GATHER,
    Doors,
    Misdelivery,
    delivery_faults,
    envelope_of,
)
from msshop.runtime.platform.openapi import Endpoint, EventTypeList, Param

MIGRATIONS = [
    """
    CREATE TABLE events (
        position INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        source TEXT NOT NULL,
        aggregate_type TEXT NOT NULL,
        aggregate_id INTEGER NOT NULL,
        aggregate_version INTEGER NOT NULL,
        occurred_at REAL NOT NULL,
        appended_at REAL NOT NULL,
        trace_id TEXT,
        body BLOB NOT NULL
    )
    """,
    # De-duplication scoped to the source (a caller cannot take another service's event id
    # first), and the log's identity: a consumer that meets another log can tell.
    """
    CREATE TABLE events_next (
        position INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        source TEXT NOT NULL,
        aggregate_type TEXT NOT NULL,
        aggregate_id INTEGER NOT NULL,
        aggregate_version INTEGER NOT NULL,
        occurred_at REAL NOT NULL,
        appended_at REAL NOT NULL,
        trace_id TEXT,
        body BLOB NOT NULL,
        UNIQUE (source, id)
    );
    INSERT INTO events_next SELECT * FROM events;
    DROP TABLE events;
    ALTER TABLE events_next RENAME TO events;
    CREATE TABLE log (id TEXT NOT NULL, created_at REAL NOT NULL);
    INSERT INTO log VALUES (lower(hex(randomblob(16))), (julianday('now') - 2440587.5) * 86400)
    """,
    # Whose log this is: the sandbox's identity (data/sandbox.id), written at the bus's
    # first start ("" until then, and in a log made before this); another's is refused.
    """
    ALTER TABLE log ADD COLUMN sandbox TEXT NOT NULL DEFAULT ''
    """,
]
MAX_WAIT = 30.0
# Positions one read of a few types looks at, at most: a reader far behind never scans
# the whole log in one request (the `type` column is read row by row: ~2 ms for 10,000
# rows with none of its types, in-process, where handing them all took ~7 ms on the bus)
SCAN = 10_000
# Seconds a long-poll of a few types, woken only by appends of other types, is held before
# it is answered with nothing but `through` (until_its_types): how far behind the head a
# step consumer with nothing to do may be, as `msshop wait` sees it
TYPED_GATHER = 0.1
#: what POST /events takes (decoded by decode_batch, which says which event is wrong)
Batch = Annotated[list[Event], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_event = msgspec.json.Decoder(Event)


class EventLog:
    """The event log's head and identity, and its readers' wake-up call."""

    def __init__(self) -> None:
        self.head = 0
        self.id = ""  # the log's identity, made with the log (bus.db's `log` table)
        self._appended = asyncio.Event()
        self.released = False  # the bus is stopping: no reader is held any more

    def appended(self, head: int) -> None:
        self.head = head
        woken, self._appended = self._appended, asyncio.Event()
        woken.set()

    def release(self) -> None:
        """The bus is stopping: every held reader answers now, with what there is (nothing
        new: its client asks again, elsewhere or later), and none is held from here on.
        Otherwise the stop would wait for a long-poll, or cut it off."""
        self.released = True
        self._appended.set()

    async def wait(self, after: int, seconds: float) -> None:
        if self.head > after or seconds <= 0 or self.released:
            return
        with suppress(TimeoutError):  # asyncio.timeout, not wait_for: a cancel is not lost
            async with asyncio.timeout(seconds):
                await self._appended.wait()


def decode_batch(body: bytes) -> list[tuple[Event, bytes]]:
    """Each event of a batch, checked against the envelope, with its bytes as sent."""
    try:
        raws = _raw_list.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise HttpError(422, f"send a JSON array of events: {exc}") from None
    if not 1 <= len(raws) <= MAX_BATCH:
        raise HttpError(422, f"send 1 to {MAX_BATCH} events at a time")
    batch = []
    for i, raw in enumerate(raws):
        try:
            batch.append((_event.decode(raw), bytes(raw)))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise HttpError(422, f"event [{i}] is not an event: {exc}") from None
    return batch


def check_sender(sender: str, batch: list[tuple[Event, bytes]]) -> None:
    """A service appends its own events only: the source recorded is who proved it sent,
    and each type comes from its one owner (events.OWNERS)."""
    for i, (event, _) in enumerate(batch):
        if event.source != sender:
            raise HttpError(403, f"event [{i}] says it comes from {event.source!r}, but "
                                 f"{sender} sent it: a service appends only its own events")
        if (wrong := not_its_owner(event.type, sender)) is not None:
            raise HttpError(403, f"event [{i}]: {wrong}: a service appends only the event "
                                 "types it owns")


def check_owner(conn: sqlite3.Connection, owner: str, sandbox: str, path: Path) -> None:
    """The log is this sandbox's: one whose owner is not yet written (a new log, or one
    made before logs knew their sandbox) becomes its own; another sandbox's is refused,
    so that no read model takes another shop's events for this one's."""
    if not sandbox or owner == sandbox:
        return
    if not owner:
        with transaction(conn):
            conn.execute("UPDATE log SET sandbox = ?", (sandbox,))
        return
    raise StartupFailed(
        f"{path} is the log of another sandbox ({owner}), not this one ({sandbox}); put "
        f"this sandbox's own back, or move it away to start an empty log and then rebuild "
        f"the read model: msshop replay query")


def append(conn: sqlite3.Connection, batch: list[tuple[Event, bytes]]) -> dict[str, Any]:
    now = time.time()
    with transaction(conn):
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO events (id, type, source, aggregate_type, aggregate_id, "
            "aggregate_version, occurred_at, appended_at, trace_id, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(e.id, e.type, e.source, e.aggregate_type, e.aggregate_id, e.aggregate_version,
              e.occurred_at, now, e.trace_id, body) for e, body in batch])
        appended = conn.total_changes - before
        (head,) = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
        if appended == len(batch):  # all new (the usual case): they took the last positions
            return {"positions": list(range(head - appended + 1, head + 1)),
                    "appended": appended, "head": head}
        # a repeat (rare: a relay whose answer was lost): each event's first position, by
        # (source, id) as stored; not through json_each, which ends a string at a NUL
        find = "SELECT position FROM events WHERE source = ? AND id = ?"
        positions = [conn.execute(find, (e.source, e.id)).fetchone()[0] for e, _ in batch]
    return {"positions": positions, "appended": appended, "head": head}


Row = tuple[int, bytes]  # (position, the event as stored)


def read(conn: sqlite3.Connection, after: int, limit: int, head: int, log_id: bytes,
         handed: Callable[[list[Row]], list[Row]] | None = None,
         types: frozenset[str] | None = None) -> bytes:
    """The answer to GET /events, assembled from the stored bytes without re-encoding;
    `handed`: what the reader is handed instead of the rows (a delivery fault); `types`:
    only events of those, among the next SCAN positions. `through` is how far it looked:
    the last row of a full page, else the end of the range looked at (the head at most).
    It is reckoned from the rows read, before a delivery fault hands them otherwise (a
    fault never keeps one back: links.Misdelivery only repeats or reorders)."""
    if types is None:
        rows: list[Row] = conn.execute(
            "SELECT position, body FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit)).fetchall()
        end = head
    else:
        end = min(after + SCAN, head)
        marks = ",".join("?" * len(types))
        rows = conn.execute(
            f"SELECT position, body FROM events WHERE position > ? AND position <= ? "
            f"AND type IN ({marks}) ORDER BY position LIMIT ?",
            (after, end, *sorted(types), limit)).fetchall()
    through = rows[-1][0] if len(rows) == limit else max(end, after)
    if handed is not None:
        rows = handed(rows)
    items = b",".join(b'{"position":%d,"event":%s}' % (position, body)
                      for position, body in rows)
    return b'{"head":%d,"log":"%s","through":%d,"events":[%s]}' % (
        head, log_id, through, items)


def has_types(conn: sqlite3.Connection, after: int, through: int,
              types: frozenset[str]) -> bool:
    """Whether an event of `types` lies in positions (after, through]."""
    marks = ",".join("?" * len(types))
    return conn.execute(f"SELECT 1 FROM events WHERE position > ? AND position <= ? AND "
                        f"type IN ({marks}) LIMIT 1",
                        (after, through, *sorted(types))).fetchone() is not None


class Deliveries:
    """Delivery faults decided here, per reader, for readers with no msshop code in them (a
    program of your own: POST /chaos {"caller": "query", "duplicate_rate": P} on the bus,
    or reorder_rate, redeliver_rate): what links.py's Misdelivery makes of each page it
    reads, as our own consumer's LinkedBus does it. The reader is who its credential says
    it is. Each event handed out of the ordinary goes into the reader's journal (the
    last JOURNAL_SIZE: journal.py), which the owner reads: GET /chaos/deliveries."""

    def __init__(self, doors: Doors) -> None:
        self.doors = doors
        self.held: dict[str, Misdelivery[Row]] = {}
        self.journals = DeliveryJournals()

    def gathering(self, reader: str) -> bool:
        """Whether a long-poll of `reader` waits REORDER_GATHER for more after it wakes."""
        fault = self.doors.fault(reader) if self.doors.faulty else None
        return fault is not None and bool(fault.get("reorder_rate"))

    def for_reader(self, reader: str) -> Callable[[list[Row]], list[Row]] | None:
        fault = self.doors.fault(reader) if self.doors.faulty else None
        if fault is None or not delivery_faults(fault):
            self.held.pop(reader, None)  # cleared: what was held is not handed over any more
            return None
        misdelivery = self.held.setdefault(reader, Misdelivery(row_aggregate))

        def handed(rows: list[Row]) -> list[Row]:
            page, odd = misdelivery.handed(rows, fault)
            if odd:
                self.note(reader, odd)
            return page

        return handed

    def note(self, reader: str, odd: list[tuple[Row, str]]) -> None:
        self.journals.note(reader, ((position, body, fault)
                                    for (position, body), fault in odd))

    def journal(self, reader: str, limit: int) -> DeliveryJournal:
        return self.journals.journal(reader, limit)


def row_aggregate(row: Row) -> tuple[str, int] | None:
    try:
        event = envelope_of(row[1])
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return event.aggregate_type, event.aggregate_id


def create_app(ctx: ServiceContext) -> ServiceApp:
    db = ctx.database(MIGRATIONS, ["events"])
    event_log = EventLog()
    deliveries = Deliveries(ctx.doors)

    class EventLogResource:
        """The event log as the app's resource: its head and identity read as the bus starts,
        its held readers released as it begins to stop (app.release_held)."""

        async def start(self) -> None:
            (event_log.head,) = db.conn.execute(
                "SELECT coalesce(max(position), 0) FROM events").fetchone()
            event_log.id, owner = db.conn.execute("SELECT id, sandbox FROM log").fetchone()
            check_owner(db.conn, owner, ctx.sandbox, ctx.db_path)

        def release(self) -> None:
            event_log.release()

        async def close(self) -> None:
            pass

    async def post_events(request: Request, caller: str) -> Response:
        # caller: the service whose credential it showed, recorded as the events' source
        if not PARTS[caller].publishes:  # a reader: query, or the dashboard's feed
            raise HttpError(403, f"{caller} reads the bus; only services that record events "
                                 "append to it")
        batch = decode_batch(await read_json(request))
        check_sender(caller, batch)
        with db.span("INSERT", "events") as span:
            answer = append(db.conn, batch)
            span["attributes"]["msshop.rows"] = answer["appended"]
        for (event, _), position in zip(batch, answer["positions"], strict=True):
            if event.parent_span and event.trace_id == span["trace_id"]:  # a followed write
                ctx.tracer.record(f"append {event.type}", "internal", span["trace_id"],
                                  span["span_id"], span["start"], span["duration_ms"],
                                  {"msshop.position": position, "msshop.event.id": event.id,
                                   "db.name": db.file_name})
        if answer["appended"]:
            event_log.appended(answer["head"])
        return json_response(answer)

    async def get_events(request: Request, caller: str, after: int, limit: int, wait_ms: int,
                         types: frozenset[str] | None) -> Response:
        deadline = asyncio.get_running_loop().time() + wait_ms / 1000
        await event_log.wait(after, wait_ms / 1000)
        if types is not None and wait_ms:
            await until_its_types(after, types, deadline)
        if wait_ms and deliveries.gathering(caller):
            await asyncio.sleep(REORDER_GATHER)
        body = read(db.conn, after, limit, event_log.head, event_log.id.encode(),
                    deliveries.for_reader(caller), types)
        return Response(body, media_type="application/json")

    async def until_its_types(after: int, types: frozenset[str], deadline: float) -> None:
        """A long-poll of a few types, woken by appends of others, is held a little longer
        (at most TYPED_GATHER): answered at once when one of its types arrives, else with
        `through` at the head, so that a saga's step consumer is not woken for every
        purchase's events that are not its own (three of them were, ~0.8x a purchase's
        rate on two cores). A reader far behind is answered at once: it has a page to read."""
        loop = asyncio.get_running_loop()
        gathered = min(deadline, loop.time() + TYPED_GATHER)
        looked = after
        while not event_log.released and event_log.head - looked <= SCAN:
            if event_log.head > looked and has_types(db.conn, looked, event_log.head, types):
                return
            looked = event_log.head
            if loop.time() >= gathered:
                return
            await event_log.wait(looked, gathered - loop.time())

    def health() -> dict[str, Any]:
        return {**db.health(), "head": event_log.head, "log": event_log.id}

    return service_app(
        ctx.name,
        [Endpoint("POST", "/events", post_events, "Append events", {
            200: (Appended, "Each event's position, in the order sent (a repeat keeps its "
                            "first), how many were new, and the head"),
            403: "Not a service that records events, or an event from another source"},
            # only the writing services, each with its own credential; not the owner's
            body=Batch, auth="services", action="appending to the bus"),
         Endpoint("GET", "/events", get_events, "Read the log after a position", {
             200: (EventPage, "The events after `after`, in order, the head, the log's "
                              "identity and how far the bus looked (`through`)")},
             params=[Param("after", Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)],
                           "the last position already read", default=0),
                     Param("limit", Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH)],
                           "at most this many events", default=500),
                     Param("wait_ms", Annotated[int, msgspec.Meta(
                         ge=0, le=int(MAX_WAIT * 1000))], "with nothing after `after`, "
                         "hold the answer until an append or this many ms (a long-poll)",
                         default=0),
                     Param("types", EventTypeList, "comma-separated event types: only "
                           f"events of these, looked for in at most {SCAN:,} positions "
                           "(`through` says how far); left out: every event")],
             auth="owner or services", action="reading the bus's log"),
         journal_endpoint(deliveries.journals, ctx.doors.ports)],
        health,
        [db, EventLogResource()],
        ctx.tracer,
        ctx.admin,
        __doc__ or "",
        senders=ctx.senders,
    )
