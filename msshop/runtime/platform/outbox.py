"""The transactional outbox and its relay.

A write and the events it causes commit together, in the service's own file: `add()` runs
inside the write's transaction. The relay, a task in the same process, sends pending rows
to the bus in order, in batches, and marks them sent with the position the bus gave them.

- Woken by the commit itself (`transaction()` sets an asyncio.Event once committed): a
  timer-driven relay would put half its interval into every event's lag.
- A slow poll (POLL seconds) is only the fallback that finds rows a crash left behind; the
  relay also looks once as soon as it starts.
- While the bus is down the rows wait and the relay retries with backoff. A row is marked
  sent only after the bus has stored it; if the process dies in between, the row is sent
  again, and the bus's append, idempotent by event id, keeps it once.
- Anything else that stops it (a full disk under `mark_sent`, a bug) ends the relay's
  attempt, not the relay: it runs under the process's task supervisor (tasks.py), which
  says so in /health and starts it again; what was stored but not marked is sent again,
  and kept once, as above.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from msshop.bus.interface import Bus, BusUnavailable
from msshop.contracts.events import Event, encode
from msshop.contracts.limits import MAX_BATCH
from msshop.contracts.status import OutboxHealth
from msshop.runtime.platform.backoff import Backoff, Sleep
from msshop.runtime.platform.db import transaction
from msshop.runtime.platform.tasks import Task, Tasks
from msshop.runtime.platform.tracing import Tracer

log = logging.getLogger("msshop.outbox")

OUTBOX_SCHEMA = """
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_id INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL,
    position INTEGER
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE sent_at IS NULL;
CREATE INDEX outbox_by_aggregate ON outbox (aggregate_type, aggregate_id)
"""
# A followed write's "<trace id>-<span id>" (events.Event.parent_span): the relay records a
# publish span under it. NULL for every other row.
OUTBOX_TRACE_COLUMN = "ALTER TABLE outbox ADD COLUMN traceparent TEXT"
# Rows a relay sends at once: with a backlog (a seed's million orders) the bus's largest
# append (10,000, about 90 ms), so the bus keeps up as the orders come in and the read
# model catches up sooner; with a trickle it sends what there is.
BATCH = MAX_BATCH
POLL = 1.0


class Outbox:
    def __init__(self, service: str, connection: Callable[[], sqlite3.Connection], bus: Bus,
                 sleep: Sleep = asyncio.sleep, tracer: Tracer | None = None,
                 tasks: Tasks | None = None) -> None:
        """`connection` returns the service's connection (it opens with the app, after this
        object is made); `sleep` is the relay's pause between retries (tests pass a fake);
        `tracer` records the publishing of followed writes' events; `tasks` supervises the
        relay (the process's: ServiceContext.tasks)."""
        self.service = service
        self.tracer = tracer
        self._connection = connection
        self.bus = bus
        self._backoff = Backoff(sleep)
        self._wake = asyncio.Event()
        self._published = asyncio.Event()  # swapped after each batch the bus has stored
        self.tasks = tasks or Tasks(service)
        self._task: Task | None = None
        self.error: str | None = None  # why the last send failed, until one succeeds
        self.failing_since: float | None = None

    # --- the write side: inside the service's transactions --------------------------------

    def add(self, conn: sqlite3.Connection, events: Sequence[Event]) -> None:
        """Record events; call inside the transaction that makes the change."""
        add_events(conn, events)

    def wake(self) -> None:
        """Events were added in a transaction of another's (a bus consumer's) that has
        committed: send them now."""
        self._wake.set()

    @contextmanager
    def transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """A write transaction that wakes the relay once it has committed."""
        with transaction(conn):
            yield conn
        self._wake.set()

    # --- the relay -------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = self.tasks.run("relay", self._run)

    async def close(self) -> None:
        if self._task is not None:
            await self._task.stop()

    async def _run(self) -> None:
        self._wake.set()  # look at once: a crash (or a failed attempt) may have left rows
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 a wait_for cancelled in the
            # turn its event fires returns instead of raising, and close() would be lost
            with suppress(TimeoutError):
                async with asyncio.timeout(POLL):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()
            if self._task is not None:  # the outbox was read and sent: whatever failed works
                self._task.recovered()

    async def flush(self) -> None:
        """Send everything pending, retrying with backoff while the bus is unreachable."""
        self._backoff.reset()
        while True:
            conn = self._connection()
            rows = conn.execute(
                "SELECT seq, body, traceparent, type FROM outbox WHERE sent_at IS NULL "
                "ORDER BY seq LIMIT ?", (BATCH,)).fetchall()
            if not rows:
                return
            followed = self._publishing(rows)
            token = self.tracer.activate(followed[0][1]) if followed and self.tracer else None
            positions: list[int] | None = None
            try:
                positions = await self.bus.append([row[1] for row in rows])
            except BusUnavailable as exc:
                failure: str | None = exc.message
            else:
                failure = None
            finally:
                if token is not None and self.tracer is not None:
                    self.tracer.deactivate(token)
            self._published_as(followed, positions, failure)
            if positions is None:
                if self.error != failure:
                    log.warning("relay: %s; %d event(s) wait in the outbox", failure,
                                self.pending())
                self.error = failure
                self.failing_since = self.failing_since or time.time()
                await self._backoff.wait()
                continue
            if self.error is not None:
                log.info("relay: the bus is back; sending the outbox")
            self.error, self.failing_since = None, None
            self._backoff.reset()
            mark_sent(conn, [row[0] for row in rows], positions)
            published, self._published = self._published, asyncio.Event()
            published.set()

    def _publishing(self, rows: list[Any]) -> list[tuple[int, dict[str, Any]]]:
        """A publish span, begun now, for each followed row of a batch: (its index, span).
        The first one is made current while the batch goes out, so the bus's spans (with the
        sandbox's log) join that trace."""
        if self.tracer is None:
            return []
        spans = []
        for index, (_, _, traceparent, kind) in enumerate(rows):
            if traceparent:
                trace_id, _, parent = traceparent.partition("-")
                spans.append((index, self.tracer.start(
                    f"publish {kind}", "producer", {"messaging.operation": "publish",
                                                    "msshop.relay.batch": len(rows)},
                    trace_id, parent)))
        return spans

    def _published_as(self, followed: list[tuple[int, dict[str, Any]]],
                      positions: list[int] | None, failure: str | None) -> None:
        """Finish the publish spans: with each event's position, or the failure (the relay
        tries again, and the next attempt has spans of its own)."""
        assert self.tracer is not None or not followed
        for index, span in followed:
            if positions is not None:
                span["attributes"]["msshop.position"] = positions[index]
            else:
                span["status"] = "error"
                span["attributes"]["msshop.failure"] = failure
            if self.tracer is not None:
                self.tracer.finish(span)

    def latest_event(self, aggregate_type: str, aggregate_id: int) -> dict[str, Any] | None:
        """The last event recorded for an entity: {"id", "type", "position" (None: not
        published yet)}."""
        conn = self._connection()
        row = conn.execute(
            "SELECT event_id, type, position FROM outbox WHERE aggregate_type = ? AND "
            "aggregate_id = ? ORDER BY seq DESC LIMIT 1", (aggregate_type, aggregate_id)
        ).fetchone()
        return None if row is None else {"id": row[0], "type": row[1], "position": row[2]}

    async def published(self, event_id: str, timeout: float) -> int | None:
        """The bus position of an event, waiting up to `timeout` s for the relay to send it."""
        conn = self._connection()
        deadline = time.monotonic() + timeout
        while True:
            row = conn.execute("SELECT position FROM outbox WHERE event_id = ?",
                               (event_id,)).fetchone()
            if row is not None and row[0] is not None:
                return int(row[0])
            remaining = deadline - time.monotonic()
            if row is None or remaining <= 0:
                return None
            with suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._published.wait()

    def pending(self) -> int:
        return waiting(self._connection())[0]

    def health(self) -> OutboxHealth:
        pending, last = waiting(self._connection())
        return {"pending": pending, "last_position": last, "error": self.error,
                "failing_since": self.failing_since}


def waiting(conn: sqlite3.Connection) -> tuple[int, int | None]:
    """(events waiting to be sent, the bus position of the last one sent), in two index
    lookups. The relay sends the oldest rows first and marks each batch sent whole, so what
    waits is every row from the oldest waiting one on. /health is looked at twenty times a
    second by `msshop wait`: counting the rows waiting took ~25 ms with a seed's million,
    and finding the last sent by reading back from the newest row ~110 ms."""
    oldest, newest = conn.execute(
        "SELECT (SELECT min(seq) FROM outbox WHERE sent_at IS NULL), "
        "(SELECT max(seq) FROM outbox)").fetchone()
    if newest is None:
        return 0, None
    row = conn.execute("SELECT position FROM outbox WHERE seq < ? ORDER BY seq DESC LIMIT 1",
                       (newest + 1 if oldest is None else oldest,)).fetchone()
    return (0 if oldest is None else newest - oldest + 1), (None if row is None else row[0])


def add_events(conn: sqlite3.Connection, events: Sequence[Event], table: str = "outbox"
               ) -> None:
    """Record events in an outbox (inside the change's transaction). Also the monolith's
    purchase, which writes orders' outbox from the CLI (`table`: as its file is ATTACHed);
    the relay finds such a row within POLL seconds, no commit of its own having woken it."""
    conn.executemany(
        f"INSERT INTO {table} (event_id, type, aggregate_type, aggregate_id, body, created_at, "
        "traceparent) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(e.id, e.type, e.aggregate_type, e.aggregate_id, encode(e), e.occurred_at,
          f"{e.trace_id}-{e.parent_span}" if e.parent_span and e.trace_id else None)
         for e in events])


def mark_sent(conn: sqlite3.Connection, seqs: list[int], positions: list[int]) -> None:
    """Mark the rows `seqs` sent, each at its bus position, in one transaction."""
    now = time.time()
    with transaction(conn):
        if _consecutive(seqs) and _consecutive(positions):
            # The usual case with a backlog (rows in a row, stored by the log one after
            # another): one statement over the range instead of a lookup per row: 30% less
            # of the relay's own time, measured on 300,000 rows.
            conn.execute("UPDATE outbox SET sent_at = ?, position = seq + ? "
                         "WHERE seq BETWEEN ? AND ?",
                         (now, positions[0] - seqs[0], seqs[0], seqs[-1]))
        else:  # rows or positions apart: a repeat answered with its first, or (NATS) another
            # service's events stored among these
            conn.executemany("UPDATE outbox SET sent_at = ?, position = ? WHERE seq = ?",
                             [(now, position, seq)
                              for seq, position in zip(seqs, positions, strict=True)])


def _consecutive(numbers: list[int]) -> bool:
    return bool(numbers) and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
