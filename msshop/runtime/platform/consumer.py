"""A bus consumer: pull from a stored position, apply each batch and the new position in one
transaction, dead-letter what cannot be applied, never stop.

Effectively exactly-once: the read model and the consumer's position change together, so a
process killed mid-batch leaves neither, and the batch is read again from the old position.
Each apply is written so that a duplicate or out-of-order event is harmless anyway
(per-aggregate versions), which covers the bus handing an event out twice.

An event that cannot be applied leaves nothing behind: each batch is applied under a
SAVEPOINT, and when one of its events fails (poison, or a bug in apply) the batch is rolled
back to it and applied again one event at a time, each under a savepoint of its own, so the
failing event's writes are undone and it alone is dead-lettered. A savepoint per event
always cost the rebuild 27-32% more CPU time (100,000 events, in-process); one per batch
costs nothing measurable. A failure that is not the event's (a full disk, an I/O error: disk.py)
dead-letters nothing: the whole transaction is rolled back, and the consumer's task, under
the process's supervisor (tasks.py), is started again until it succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Protocol

import msgspec

from msshop.bus.interface import Bus, BusUnavailable, Page
from msshop.contracts.answers import ReplicaFreshness
from msshop.contracts.events import Delivered, Received, receive
from msshop.contracts.status import ConsumerHealth
from msshop.runtime.platform import disk
from msshop.runtime.platform.backoff import Backoff, Sleep
from msshop.runtime.platform.db import transaction
from msshop.runtime.platform.tasks import Task, Tasks
from msshop.runtime.platform.tracing import Tracer

log = logging.getLogger("msshop.consumer")

CONSUMER_SCHEMA = """
CREATE TABLE consumer_offsets (
    consumer TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE dead_letters (
    position INTEGER PRIMARY KEY,
    event_id TEXT,
    type TEXT,
    reason TEXT NOT NULL,
    body BLOB NOT NULL,
    dead_at REAL NOT NULL
)
"""
# The log the stored position belongs to (msshop.bus.interface.Page.log): a position in
# another log means nothing, and a consumer must say so rather than wait for it.
CONSUMER_LOG_COLUMN = "ALTER TABLE consumer_offsets ADD COLUMN log_id TEXT"
BATCH = 1000  # events per read while following the bus
CATCH_UP_READ = 10_000  # events per read in a rebuild (the bus's most)
CATCH_UP_TRANSACTION = 100_000  # events per transaction in a rebuild: see catch_up()
LONG_POLL = 10.0  # seconds a read waits for an append
SILENT_SLACK = 2.0  # a long-poll open this much longer than LONG_POLL: the bus is not answering
# A consumer that skips most events (a saga's steps): a batch with nothing for it moves its
# position in memory only, stored with the next batch it writes or once this many events
# have gone by: a restart reads at most these again (and skips them again).
IDLE_STORE = 10_000


class Poison(Exception):
    """This event can never be applied; the reason goes to the dead-letter table."""


# Returns False for an event it skipped (a saga's step consumer: not its type): a followed
# write's event then gets no span of its applying here. None (or True): applied.
Apply = Callable[[sqlite3.Connection, Received, int], bool | None]
# Tracer.record's arguments: (name, kind, trace id, parent span, started, ms, attributes)
SpanToRecord = tuple[str, str, str, str | None, float, float, dict[str, Any]]


class Held(Protocol):
    """What an apply keeps in memory besides its writes (a bulk load's rows held back:
    projection.py), rolled back with them: `mark()` where a savepoint is taken, `rewind()`
    when it is rolled back to (to what was held at the mark)."""

    def mark(self) -> None: ...

    def rewind(self) -> None: ...


class Consumer:
    def __init__(self, name: str, connection: Callable[[], sqlite3.Connection], bus: Bus,
                 apply: Apply, sleep: Sleep = asyncio.sleep, tracer: Tracer | None = None,
                 db_name: str = "", tasks: Tasks | None = None, held: Held | None = None,
                 committed: Callable[[], None] | None = None,
                 restarts_on_a_new_log: bool = False,
                 skips: Callable[[Received], bool] | None = None,
                 types: frozenset[str] | None = None) -> None:
        """`sleep` is the pause between retries while the bus is unreachable (tests pass a
        fake); `tracer` records applying a followed write's events (into `db_name`);
        `tasks` supervises the consumer's task (the process's: ServiceContext.tasks);
        `held`: what `apply` keeps in memory, rolled back with a savepoint; `committed`
        runs after each batch followed live has committed (a saga's step wakes its relay
        and whoever waits for an outcome); `restarts_on_a_new_log`: a log replaced or
        emptied is read from its start (a saga's steps, applied once per order whatever
        they read), where a read model stops and says to rebuild it; `skips`: the events
        `apply` would do nothing with, so that a batch of only those needs no transaction
        (IDLE_STORE); `types`: the only event types `apply` does anything with, asked of
        the bus while following it (a bus may hand others too: `skips` them), and the
        position moves to how far the bus looked (Page.through). A rebuild (catch_up)
        reads every type."""
        self.name = name
        self.tracer = tracer
        self.db_name = db_name
        self._connection = connection
        self.bus = bus
        self.apply = apply
        self.committed = committed
        self.restarts_on_a_new_log = restarts_on_a_new_log
        self.skips = skips
        self.types = types
        self.stored = 0  # the position as stored in the file (`position` may be ahead)
        self._backoff = Backoff(sleep)
        self.position = 0  # applied and stored
        self.head = 0  # the bus's last position, as last seen
        self.head_seen_at: float | None = None
        self.listening = False  # a long-poll is open: an append reaches us within ~1 ms
        # After a start (or a rebuild), the bus's head at the first read: until the read model
        # has applied that far it is catching up, and says so instead of answering as if
        # current. None: not catching up (or not known yet: the bus was unreachable).
        self.catching_up_to: int | None = None
        self._first_read = True
        self.last_applied_at: float | None = None
        self.applied = 0
        self.dead = 0
        self.error: str | None = None
        self.log_id: str | None = None  # the log the stored position is a position in
        # the bus's log is not the one the read model was built from (replaced, emptied):
        # what happened and the fix; nothing is applied until it is fixed
        self.log_problem: str | None = None
        # (occurred_at, ms from the commit at the source to applied here), recent events
        self.lags: deque[tuple[float, float]] = deque(maxlen=100_000)
        self._advanced = asyncio.Event()
        self.tasks = tasks or Tasks(name)
        self.held = held
        self._task: Task | None = None
        # spans of followed applies not yet committed: recorded once their transaction is,
        # dropped with a savepoint rolled back (a batch applied again event by event) or a
        # transaction that fails (nothing of it was applied)
        self._uncommitted: list[SpanToRecord] = []

    async def start(self) -> None:
        """Resume from the stored position, and follow the bus until close()."""
        self._load()
        self._first_read = True
        self._task = self.tasks.run("consumer", self._run)

    def _load(self) -> None:
        conn = self._connection()
        row = conn.execute("SELECT position, log_id FROM consumer_offsets WHERE consumer = ?",
                           (self.name,)).fetchone()
        self.position, self.log_id = (row[0], row[1]) if row else (0, None)
        self.stored = self.position
        self.log_problem = None
        self.head = max(self.head, self.position)
        (self.dead,) = conn.execute("SELECT count(*) FROM dead_letters").fetchone()

    async def close(self) -> None:
        if self._task is not None:
            await self._task.stop()
            self._task = None
            self.listening = False

    @property
    def failing(self) -> bool:
        """Its task failed and is being started again (tasks.py says why)."""
        return self._task is not None and self._task.error is not None

    async def catch_up(self, then: Callable[[sqlite3.Connection], None] | None = None) -> int:
        """Read and apply from the stored position until the bus has nothing newer, then
        return how many events were applied (for rebuilds: no long-poll, no task). `then`
        runs inside the last transaction, after the last events: what commits with them.

        Made for bulk: reads are pipelined (the next batch is asked for before this one is
        applied, so the bus reads and sends while this process writes), and up to
        CATCH_UP_TRANSACTION events go into one transaction. Measured on 77k events: a commit
        per 1,000 events ran at 43k events/s, one per 10,000 at 105k and one for all at 136k
        (in-process, without the reads), since each commit rewrites the pages it touched."""
        self._load()
        applied = self.applied
        conn = self._connection()
        # a small first read, so that the pipeline is full before the first large write
        batch = await self.bus.read(self.position, BATCH)
        if not self._same_log(batch):
            raise BusUnavailable(self.log_problem or "the bus's log changed")
        while True:
            with transaction(conn):
                position, dead = self.position, 0
                occurred: list[float] = []
                while batch.events and len(occurred) + dead < CATCH_UP_TRANSACTION:
                    following = asyncio.create_task(
                        self.bus.read(batch.events[-1].position, CATCH_UP_READ))
                    await asyncio.sleep(0)  # the next request goes out before we block
                    try:
                        position, more, more_dead = self._write(conn, batch.events,
                                                                follow=False)
                    except BaseException:
                        following.cancel()
                        raise
                    occurred += more
                    dead += more_dead
                    batch = await following
                    if not self._same_log(batch):
                        raise BusUnavailable(self.log_problem or "the bus's log changed")
                if not batch.events and then is not None:
                    then(conn)
            if occurred or dead:
                # no lags: a catch-up replays events from long ago; lag is for live delivery
                self._advanced_to(position, occurred, dead, record_lags=False)
            if not batch.events:
                self.head = max(batch.head, self.position)
                return self.applied - applied

    async def _run(self) -> None:
        wait = 0.0  # the first read answers at once: it learns the head
        try:
            while True:
                try:
                    self.listening = wait > 0
                    batch = await self.bus.read(self.position, BATCH, wait, self.types)
                except BusUnavailable as exc:
                    self.listening = False
                    if self.error != exc.message:
                        log.warning("consumer: %s; answers come from position %d",
                                    exc.message, self.position)
                    self.error = exc.message
                    await self._backoff.wait()
                    wait = 0.0  # the next read answers at once, so a bus that is back is seen
                    continue
                if self.error is not None:
                    log.info("consumer: the bus is back; reading from position %d",
                             self.position)
                self.error, wait = None, LONG_POLL
                self._backoff.reset()
                if not self._seen(batch):
                    await self._backoff.wait_longest()  # not this read model's log: slowly
                elif self._task is not None:  # read and applied: whatever failed works
                    self._task.recovered()
        finally:  # ended (a failure its supervisor restarts, or close): no long-poll open,
            self.listening = False  # so a task that failed is not taken for a silent bus

    def _seen(self, batch: Page) -> bool:
        """A page read while following: note the head, and apply its events; False if the
        page is from a log this read model was not built from (nothing applied)."""
        self.head_seen_at = time.time()
        if self.restarts_on_a_new_log and self._replaced(batch):
            log.warning("consumer: the bus's log was replaced or emptied (it is at position "
                        "%d, this consumer was at %d); reading it from its start",
                        batch.head, self.position)
            self.position, self.head, self.log_id = 0, batch.head, batch.log or None
            return True  # the next read starts at 0
        if not self._same_log(batch):
            self.head = batch.head
            return False
        self.head = max(batch.head, self.position)
        if self._first_read:
            self._first_read = False
            if batch.head > self.position:
                self.catching_up_to = batch.head
                log.info("consumer: catching up from position %d to %d", self.position,
                         batch.head)
        if self.types is not None:  # a step consumer's `applied` counts what it skipped,
            self.applied += self._looked_past(batch)  # the bus's skips as its own
        if batch.events:
            self.apply_batch(batch.events, batch.through)
        elif batch.through > self.position:  # looked through events of other types only
            self._passed(batch.through)
        return True

    def _looked_past(self, page: Page) -> int:
        """The positions of the page's range (the position to the last event, or
        `through`) that the bus looked at and did not hand over (of other types)."""
        handed = {item.position for item in page.events if item.position > self.position}
        end = max([page.through, *handed], default=self.position)
        return max(0, end - self.position - len(handed))

    def _replaced(self, page: Page) -> bool:
        """The page is of another log than the stored position's, or of one emptied."""
        return bool(page.log and self.log_id and page.log != self.log_id) or \
            page.head < self.position

    def _same_log(self, page: Page) -> bool:
        """Whether `page` continues the log the stored position belongs to; if not, say why
        and name the fix in log_problem. A consumer with no log yet takes this one."""
        problem = None
        if page.log and self.log_id and page.log != self.log_id:
            problem = (f"the bus's log was replaced (it is log {page.log[:8]}, at position "
                       f"{page.head:,}; this read model was built from log {self.log_id[:8]}, "
                       f"up to position {self.position:,}); rebuild it from the new log with: "
                       "msshop replay query")
        elif page.head < self.position:
            problem = (f"the bus's log ends at position {page.head:,}, but this read model "
                       f"has applied up to position {self.position:,}: the log was emptied "
                       "or replaced; rebuild it with: msshop replay query")
        if problem != self.log_problem:
            if problem:
                log.error("consumer: %s", problem)
            else:
                log.info("consumer: the bus's log is this read model's again")
        self.log_problem = problem
        if problem is None and page.log:
            self.log_id = page.log
        return problem is None

    def apply_batch(self, delivered: list[Delivered], through: int = 0) -> None:
        """Apply events and store the new position, all in one transaction; the position
        is the last event's, or `through` (how far the bus looked: Page.through) if later."""
        skipped = self._all_skipped(delivered, max(delivered[-1].position, through))
        if skipped is not None:  # nothing to write: the position moves in memory
            self._advanced_to(max(delivered[-1].position, through), skipped, 0)
            return
        conn = self._connection()
        try:
            with transaction(conn):
                position, occurred, dead = self._write(conn, delivered, through=through)
        except BaseException:
            self._uncommitted.clear()
            raise
        self.stored = position
        self._record_committed()
        self._advanced_to(position, occurred, dead)
        if self.committed is not None:
            self.committed()

    def _passed(self, through: int) -> None:
        """The bus looked up to `through` and found nothing of this consumer's types: the
        position moves there in memory, stored once it is IDLE_STORE ahead of the file."""
        if through - self.stored >= IDLE_STORE:
            conn = self._connection()
            with transaction(conn):
                self._store_position(conn, through)
            self.stored = through
        self._advanced_to(through, [], 0)

    def _all_skipped(self, delivered: list[Delivered], position: int) -> list[float] | None:
        """When `skips` says every event of the batch is nothing to this consumer (and the
        stored position is less than IDLE_STORE behind): when each occurred. None: the
        batch is applied and stored as any other (an event it may apply, or one that is
        not an event, or not from its sender: dead-lettered there)."""
        if self.skips is None or position - self.stored >= IDLE_STORE:
            return None
        occurred = []
        for item in delivered:
            try:
                event = receive(item.event)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return None
            if (item.sender and event.source != item.sender) or not self.skips(event):
                return None
            occurred.append(event.occurred_at)
        return occurred

    def _record_committed(self) -> None:
        if self.tracer is not None:
            for span in self._uncommitted:
                self.tracer.record(*span)
        self._uncommitted.clear()

    def _write(self, conn: sqlite3.Connection, delivered: list[Delivered],
               follow: bool = True, through: int = 0) -> tuple[int, list[float], int]:
        """Apply events and store the position, inside the caller's transaction;
        (the new position, when each applied event occurred, how many were dead-lettered).
        `follow`: a followed write's event gets a span of its applying (live, not in a
        rebuild). `through`: the position stored, if later than the last event's.

        The batch goes under one savepoint; if an event fails, it is rolled back and applied
        again event by event (_write_each), so the failing event leaves nothing behind. A
        failure that is the file's, not the event's (disk.cannot_write), is raised: the
        caller's transaction is rolled back whole, and nothing is dead-lettered for it."""
        conn.execute("SAVEPOINT batch")
        if self.held is not None:
            self.held.mark()
        spans = len(self._uncommitted)
        try:
            occurred = [self._apply_one(conn, item, follow) for item in delivered]
            dead = 0
        except Exception as exc:
            if disk.cannot_write(exc):
                raise
            conn.execute("ROLLBACK TO batch")
            if self.held is not None:
                self.held.rewind()
            del self._uncommitted[spans:]  # applied again below: one span each
            occurred, dead = self._write_each(conn, delivered, follow)
        conn.execute("RELEASE batch")
        position = max(delivered[-1].position, through)
        self._store_position(conn, position)
        return position, occurred, dead

    def _store_position(self, conn: sqlite3.Connection, position: int) -> None:
        conn.execute(
            "INSERT INTO consumer_offsets (consumer, position, updated_at, log_id) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (consumer) DO UPDATE SET "
            "position = excluded.position, updated_at = excluded.updated_at, "
            "log_id = excluded.log_id", (self.name, position, time.time(), self.log_id))

    def _write_each(self, conn: sqlite3.Connection, delivered: list[Delivered],
                    follow: bool) -> tuple[list[float], int]:
        """A batch one of whose events failed, each event under a savepoint of its own: what
        fails is rolled back and dead-lettered with the reason, the rest applied."""
        occurred: list[float] = []
        dead = 0
        for item in delivered:
            conn.execute("SAVEPOINT event")
            if self.held is not None:
                self.held.mark()
            spans = len(self._uncommitted)
            try:
                occurred.append(self._apply_one(conn, item, follow))
            except Exception as exc:
                if disk.cannot_write(exc):
                    raise
                conn.execute("ROLLBACK TO event")
                if self.held is not None:
                    self.held.rewind()
                del self._uncommitted[spans:]
                if isinstance(exc, Poison):
                    reason = str(exc)
                else:  # a bug must not stop the consumer either
                    log.exception("consumer: applying position %d failed", item.position)
                    reason = f"failed to apply: {type(exc).__name__}: {exc}"
                self._dead_letter(conn, item.position, bytes(item.event), reason)
                dead += 1
            conn.execute("RELEASE event")
        return occurred, dead

    def _apply_one(self, conn: sqlite3.Connection, item: Delivered, follow: bool) -> float:
        """Apply one delivered event; when it occurred. Poison if it can never be."""
        try:
            event = receive(item.event)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Poison(f"not an event: {exc}") from None
        if item.sender and event.source != item.sender:
            raise Poison(f"the event says it comes from {event.source!r}, but "
                         f"{item.sender} sent it")
        if follow and event.parent_span and self.tracer is not None:
            self._applied_followed(conn, event, item.position)
        else:
            self.apply(conn, event, item.position)
        return event.occurred_at

    def _applied_followed(self, conn: sqlite3.Connection, event: Received,
                          position: int) -> None:
        """Apply a followed write's event, timed, as a span in the write's trace: the end of
        its journey, with the replication lag (commit at the source to applied here)."""
        assert self.tracer is not None and event.trace_id is not None
        started, began = time.time(), time.perf_counter()
        if self.apply(conn, event, position) is False:
            return
        self._uncommitted.append((
            f"apply {event.type}", "consumer", event.trace_id, event.parent_span, started,
            (time.perf_counter() - began) * 1000,
            {"db.system": "sqlite", "db.name": self.db_name, "db.operation": "UPSERT",
             "msshop.position": position, "msshop.event.id": event.id,
             "msshop.lag_ms": round((time.time() - event.occurred_at) * 1000, 3)}))

    def _advanced_to(self, position: int, occurred: list[float], dead: int,
                     record_lags: bool = True) -> None:
        """What a committed batch changes in memory; wakes read-your-writes waiters."""
        now = time.time()
        self.position, self.last_applied_at = position, now
        self.head = max(self.head, position)
        self.applied += len(occurred)
        self.dead += dead
        if record_lags:
            self.lags.extend((at, (now - at) * 1000) for at in occurred)
        if self.catching_up_to is not None and position >= self.catching_up_to:
            log.info("consumer: caught up at position %d", position)
            self.catching_up_to = None
        woken, self._advanced = self._advanced, asyncio.Event()
        woken.set()

    def _dead_letter(self, conn: sqlite3.Connection, position: int, raw: bytes,
                     reason: str) -> None:
        event_id = event_type = None
        with suppress(Exception):
            envelope = msgspec.json.decode(raw)
            event_id, event_type = envelope.get("id"), envelope.get("type")
        log.warning("consumer: dead-lettered position %d (%s): %s", position, event_type, reason)
        conn.execute("INSERT OR REPLACE INTO dead_letters (position, event_id, type, reason, "
                     "body, dead_at) VALUES (?, ?, ?, ?, ?, ?)",
                     (position, event_id, event_type, reason, raw, time.time()))

    async def wait_for(self, position: int, timeout: float) -> bool:
        """Wait until `position` is applied (read-your-writes); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.position < position:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with suppress(TimeoutError):  # asyncio.timeout: see Outbox._run
                async with asyncio.timeout(remaining):
                    await self._advanced.wait()
        return True

    def freshness(self) -> ReplicaFreshness:
        now = time.time()
        error = self.error
        # A bus that answers returns every long-poll within LONG_POLL, even with nothing new;
        # one open longer than that (a frozen bus) is not "listening", whatever the socket says
        silent = (self.listening and self.head_seen_at is not None
                  and now - self.head_seen_at > LONG_POLL + SILENT_SLACK)
        if silent and error is None:
            assert self.head_seen_at is not None
            error = f"the bus has not answered for {now - self.head_seen_at:.0f} s"
        return {
            "position": self.position,
            "bus_head": self.head,
            "behind": self.head - self.position,
            "caught_up": (self.head == self.position and error is None
                          and self.log_problem is None and not self.failing),
            "catching_up_to": self.catching_up_to,
            "listening": self.listening and not silent,
            "head_seen_ms_ago": None if self.head_seen_at is None
            else round((now - self.head_seen_at) * 1000, 1),
            "last_applied_ms_ago": None if self.last_applied_at is None
            else round((now - self.last_applied_at) * 1000, 1),
            "bus_error": error,
            "log_problem": self.log_problem,
        }

    def health(self) -> ConsumerHealth:
        return {**self.freshness(), "applied": self.applied, "dead_letters": self.dead}

    def lag_since(self, since: float) -> list[float]:
        """Replication lag (ms) of the events that occurred at or after `since`, sorted."""
        return sorted(lag for at, lag in self.lags if at >= since)
