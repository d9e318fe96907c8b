"""A participant's steps of the choreographed saga (issue 26): products, users and orders
each follow the bus with a Consumer of their own, in their own process and file, and
apply the saga's events they have a step for.

    orders    OrderPlaced (pending) --> products takes the stock: StockTaken | StockRefused
    users     StockTaken            --> takes the credit: CreditTaken | CreditRefused
    products  CreditRefused         --> gives the stock back: StockGivenBack
    orders    CreditTaken | StockRefused | StockGivenBack --> confirmed | rejected

A step's writes, its outcome event (in the participant's own outbox) and the consumer's
position commit in one transaction: a process killed mid-batch leaves none of them, and
reads the batch again. A step is applied once per order: `saga_steps` keeps the
(order, event type) done, so a duplicate delivery (the bus's, or a redelivery after a
crash) does nothing the second time.

The step consumer asks the bus for the types it has a step for only (Consumer `types`):
the log bus hands those alone and says how far it looked (Page.through), so users and
orders never read a seed's OrderPlaced at all. A bus that hands every type (NATS, for
now) costs each other event its envelope's decoding and a dict lookup here (`_skips`);
products also decodes an OrderPlaced's `status` alone, to skip a confirmed order (a seed's
million). A batch of nothing but skipped events (or a page of none, the bus having looked
further) opens no transaction: the position moves in memory, and is stored with the next
batch that writes, or every IDLE_STORE events (consumer.py); a restart reads at most those
again, and skips them again.
Each outcome event carries the trace of the event that caused it: a followed purchase
(`msshop buy --trace`) shows each step's apply, in each participant, under its trace.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from msshop.bus.interface import Bus
from msshop.contracts import events
from msshop.contracts.events import Event, Received
from msshop.contracts.shop import OrderStatus
from msshop.contracts.status import ConsumerHealth
from msshop.contracts.strategies import WriteStrategy
from msshop.runtime.platform.consumer import (
    CONSUMER_LOG_COLUMN,
    CONSUMER_SCHEMA,
    Consumer,
    Poison,
)
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.db import Database
from msshop.runtime.platform.outbox import Outbox, add_events

STEPS_SCHEMA = """
CREATE TABLE saga_steps (
    order_id INTEGER NOT NULL,
    step TEXT NOT NULL,
    done_at REAL NOT NULL,
    PRIMARY KEY (order_id, step)
) WITHOUT ROWID
"""
#: what a participant's file gains (one migration): the consumer's position and dead
#: letters, and the steps it has done
SAGA_MIGRATION = ";\n".join([CONSUMER_SCHEMA, CONSUMER_LOG_COLUMN, STEPS_SCHEMA])

D = TypeVar("D", bound=msgspec.Struct)


class _Status(msgspec.Struct):
    """An OrderPlaced's status and saga alone: msgspec skips the rest of the data unread."""

    status: str = "confirmed"
    write: str | None = None


_status = msgspec.json.Decoder(_Status).decode


def pending(event: Received) -> bool:
    """An OrderPlaced of a choreographed saga (pending), not a confirmed order (the seed's,
    direct-call's: a million of them cost one small decode each), nor an orchestrated one
    (orders' orchestrator sends TakeStock for those)."""
    try:
        placed = _status(event.data)
    except msgspec.DecodeError:
        return True  # the step's own decoding says what is wrong with it
    return placed.status == OrderStatus.PENDING and \
        placed.write != WriteStrategy.SAGA_ORCHESTRATED


class _ReplyTo(msgspec.Struct):
    reply_to: str | None = None


_reply_to = msgspec.json.Decoder(_ReplyTo).decode


def is_reply(event: Received) -> bool:
    """A step event that answers an orchestrator's command (its `reply_to` alone decoded)."""
    try:
        return _reply_to(event.data).reply_to is not None
    except msgspec.DecodeError:
        return True  # the step's own decoding says what is wrong with it


def choreographed(event: Received) -> bool:
    """A step event of a choreographed saga: one the next participant acts on by itself."""
    return not is_reply(event)


@dataclass(frozen=True)
class Step(Generic[D]):
    """What a participant does with one event type: `apply` (inside the batch's
    transaction) with the event's data, decoded as `data`; it returns the outcome event to
    publish, if any (or several). `wanted`: a cheap look before anything is written (None:
    all)."""

    data: type[D]
    apply: Callable[[sqlite3.Connection, D, Received], Event | list[Event] | None]
    wanted: Callable[[Received], bool] | None = None

    def decode(self, event: Received) -> D:
        try:
            return msgspec.json.decode(event.data, type=self.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Poison(f"a {event.type} whose data is not one: {exc}") from None


def outcome(event_type: str, data: Any, cause: Received) -> Event:
    """A step's outcome event, in the trace of the event that caused it (a reply, when the
    cause is an orchestrator's command: its data says `reply_to` itself)."""
    return events.saga_step(event_type, data, cause.trace_id, cause.parent_span)


class Participant:
    """A service's part in the saga: its step consumer, and the steps it applies."""

    def __init__(self, ctx: ServiceContext, db: Database, bus: Bus, outbox: Outbox,
                 steps: dict[str, Step[Any]],
                 ended: Callable[[], None] | None = None) -> None:
        """`ended`: called after a batch has committed (orders wakes who waits)."""
        self.steps = steps
        self.outbox = outbox
        self.ended = ended
        self._made = False
        self.consumer = Consumer(f"{ctx.name}-saga", lambda: db.conn, bus, self._apply,
                                 tracer=ctx.tracer, db_name=db.file_name, tasks=ctx.tasks,
                                 committed=self._committed, restarts_on_a_new_log=True,
                                 skips=self._skips, types=frozenset(steps))

    def _skips(self, event: Received) -> bool:
        """Not this participant's: no step for its type, or one that does not want it."""
        step = self.steps.get(event.type)
        return step is None or (step.wanted is not None and not step.wanted(event))

    def _apply(self, conn: sqlite3.Connection, event: Received, position: int) -> bool:
        """Apply the event's step; False: not this participant's (skipped: the position
        advances, nothing else, and a followed write's trace gets no span of it here)."""
        if self._skips(event):
            return False
        step = self.steps[event.type]
        wrong = events.not_its_owner(event.type, event.source)
        if wrong is not None:
            raise Poison(wrong)
        data = step.decode(event)
        done = conn.execute("INSERT OR IGNORE INTO saga_steps (order_id, step, done_at) "
                            "VALUES (?, ?, ?)", (event.aggregate_id, event.type, time.time()))
        if done.rowcount == 0:
            return True  # applied before: a duplicate delivery, nothing more to do
        made = step.apply(conn, data, event)
        if made:
            add_events(conn, made if isinstance(made, list) else [made])
            self._made = True
        return True

    def _committed(self) -> None:
        if self._made:
            self._made = False
            self.outbox.wake()
        if self.ended is not None:
            self.ended()

    async def start(self) -> None:
        await self.consumer.start()

    async def close(self) -> None:
        await self.consumer.close()

    def health(self) -> ConsumerHealth:
        return self.consumer.health()
