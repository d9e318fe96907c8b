"""Orders' orchestrator of the saga-orchestrated purchase (issue 27), in the manner of
eventuate-tram-sagas and the FTGO CreateOrderSaga: the steps and their compensations are
known here, and only here.

    step            command (to)              reply                      compensation
    take the stock  TakeStock (products)      StockTaken | StockRefused  GiveStockBack
    take the credit TakeCredit (users)        CreditTaken | CreditRefused GiveCreditBack

Each purchase's saga is a row of orders.db's `sagas` (contracts/sagas.py's states), written
in the same transaction as the command it sends (in orders' outbox) and as the order it
ends: a killed orchestrator finds every saga where its last commit left it, and its step
consumer reads again the replies it had not committed. One command is outstanding at a
time; a reply counts only if it answers that very command (`reply_to`), so a late or
repeated reply changes nothing.

A step that gets no reply within the step timeout (`saga.step_timeout`, checked by the
`Deadlines` task) is given up on, and the saga is undone in reverse: GiveCreditBack if the
credit was being taken, then GiveStockBack. A compensation has no deadline: the command it
undoes may have been applied, and is before it on the bus, so the participant applies the
two in that order whenever it answers, and the order stays pending until it has. The
order then ends rejected with the reason ("products did not answer within 10 s").

`transition` is the saga's definition, pure (tests/unit/test_orchestration.py); the rest
reads and writes its rows.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from msshop.contracts import events
from msshop.contracts.events import (
    CreditGivenBackData,
    CreditRefusedData,
    CreditTakenData,
    Event,
    GiveBackData,
    Received,
    StockGivenBackData,
    StockRefusedData,
    StockTakenData,
    TakeCreditData,
    TakeStockData,
)
from msshop.contracts.sagas import UNFINISHED_SQL, SagaState
from msshop.contracts.shop import OrderStatus
from msshop.runtime.platform.outbox import Outbox
from msshop.runtime.platform.tasks import Task, Tasks
from msshop.runtime.services.orders.saga import end

SAGAS_SCHEMA = f"""
CREATE TABLE sagas (
    order_id INTEGER PRIMARY KEY,
    purchase TEXT NOT NULL,
    state TEXT NOT NULL,
    command TEXT NOT NULL,      -- the id of the command whose reply it waits for (the last)
    deadline REAL,              -- when that step is given up on (null: no limit, or ended)
    price_cents INTEGER,        -- the unit price products took the stock at
    reason TEXT,                -- why it is being undone, or was
    trace_id TEXT,              -- the purchase's trace: its commands carry it
    parent_span TEXT,
    started_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX sagas_by_deadline ON sagas (deadline) WHERE deadline IS NOT NULL;
CREATE INDEX sagas_unfinished ON sagas (started_at) WHERE {UNFINISHED_SQL};
"""

Reply = (StockTakenData | StockRefusedData | CreditTakenData | CreditRefusedData
         | StockGivenBackData | CreditGivenBackData)
Command = TakeStockData | TakeCreditData | GiveBackData


@dataclass(frozen=True)
class Saga:
    """One purchase's saga as the orchestrator reads it: its row, and its order's lines."""

    order_id: int
    purchase: str
    user_id: int
    product_id: int
    quantity: int
    state: SagaState
    command: str
    price_cents: int | None
    reason: str | None
    trace_id: str | None
    parent_span: str | None


@dataclass(frozen=True)
class Move:
    """What the saga does next: its new state, the command it sends (its type and data),
    whether that step has a deadline, and the order's end, if it ends."""

    state: SagaState
    command: tuple[str, Command] | None = None
    timed: bool = False
    price_cents: int | None = None
    reason: str | None = None
    ends: OrderStatus | None = None


def take_stock(saga: Saga) -> tuple[str, Command]:
    return events.TAKE_STOCK, TakeStockData(saga.order_id, saga.purchase, saga.user_id,
                                            saga.product_id, saga.quantity)


def _give_back(kind: str, saga: Saga, reason: str) -> tuple[str, Command]:
    return kind, GiveBackData(saga.order_id, saga.purchase, reason)


def transition(saga: Saga, reply: Reply) -> Move | None:
    """The saga's definition: what a reply to its outstanding command makes it do (None:
    the reply is not awaited: late, repeated, or of a step already given up on)."""
    state = saga.state
    if reply.reply_to != saga.command:
        return None
    if state is SagaState.TAKING_STOCK and isinstance(reply, StockTakenData):
        price = round(reply.unit_price * 100)
        return Move(SagaState.TAKING_CREDIT, (events.TAKE_CREDIT, TakeCreditData(
            saga.order_id, saga.purchase, saga.user_id, saga.quantity * price / 100,
            reply.unit_price)), timed=True, price_cents=price)
    if state is SagaState.TAKING_STOCK and isinstance(reply, StockRefusedData):
        return Move(SagaState.REJECTED, reason=reply.reason, ends=OrderStatus.REJECTED)
    if state is SagaState.TAKING_CREDIT and isinstance(reply, CreditTakenData):
        return Move(SagaState.CONFIRMED, ends=OrderStatus.CONFIRMED)
    if state is SagaState.TAKING_CREDIT and isinstance(reply, CreditRefusedData):
        return Move(SagaState.GIVING_STOCK_BACK, _give_back(events.GIVE_STOCK_BACK, saga,
                                                            reply.reason), reason=reply.reason)
    if state is SagaState.GIVING_CREDIT_BACK and isinstance(reply, CreditGivenBackData):
        reason = saga.reason or reply.reason
        return Move(SagaState.GIVING_STOCK_BACK, _give_back(events.GIVE_STOCK_BACK, saga,
                                                            reason), reason=reason)
    if state is SagaState.GIVING_STOCK_BACK and isinstance(reply, StockGivenBackData):
        return Move(SagaState.REJECTED, reason=saga.reason or reply.reason,
                    ends=OrderStatus.REJECTED)
    return None


def overdue(saga: Saga, step_timeout: float) -> Move | None:
    """The step's participant did not answer in time: undo the saga, newest step first."""
    waited = saga.state.waits_for
    reason = f"{waited} did not answer within {step_timeout:g} s"
    if saga.state is SagaState.TAKING_STOCK:
        return Move(SagaState.GIVING_STOCK_BACK,
                    _give_back(events.GIVE_STOCK_BACK, saga, reason), reason=reason)
    if saga.state is SagaState.TAKING_CREDIT:
        return Move(SagaState.GIVING_CREDIT_BACK,
                    _give_back(events.GIVE_CREDIT_BACK, saga, reason), reason=reason)
    return None  # a compensation waits as long as it takes


_SAGA = ("SELECT s.order_id, s.purchase, o.user_id, o.product_id, o.quantity, s.state, "
         "s.command, s.price_cents, s.reason, s.trace_id, s.parent_span "
         "FROM sagas AS s JOIN orders AS o ON o.id = s.order_id")


def _saga(row: tuple[Any, ...]) -> Saga:
    return Saga(row[0], row[1], row[2], row[3], row[4], SagaState(row[5]), row[6], row[7],
                row[8], row[9], row[10])


def begin(conn: sqlite3.Connection, order_id: int, purchase: str, user_id: int,
          product_id: int, quantity: int, trace_id: str | None, parent_span: str | None,
          now: float, step_timeout: float) -> Event:
    """A new order's saga, in the order's transaction: its row, and its first command
    (TakeStock, returned for the outbox)."""
    saga = Saga(order_id, purchase, user_id, product_id, quantity, SagaState.TAKING_STOCK,
                "", None, None, trace_id, parent_span)
    command = _command(*take_stock(saga), trace_id, parent_span)
    conn.execute("INSERT INTO sagas (order_id, purchase, state, command, deadline, trace_id, "
                 "parent_span, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (order_id, purchase, SagaState.TAKING_STOCK.value, command.id,
                  now + step_timeout, trace_id, parent_span, now, now))
    return command


def _command(kind: str, data: Command, trace_id: str | None, parent_span: str | None
             ) -> Event:
    return events.saga_step(kind, data, trace_id, parent_span)


def _move(conn: sqlite3.Connection, saga: Saga, move: Move, step_timeout: float,
          trace_id: str | None, parent_span: str | None) -> list[Event]:
    """Write the move (inside the caller's transaction); the events it sends."""
    now = time.time()
    made: list[Event] = []
    command_id = saga.command
    if move.command is not None:
        command = _command(*move.command, trace_id, parent_span)
        made.append(command)
        command_id = command.id
    conn.execute("UPDATE sagas SET state = ?, command = ?, deadline = ?, "
                 "price_cents = coalesce(?, price_cents), reason = coalesce(?, reason), "
                 "updated_at = ? WHERE order_id = ?",
                 (move.state.value, command_id, now + step_timeout if move.timed else None,
                  move.price_cents, move.reason, now, saga.order_id))
    if move.ends is not None:
        price = move.price_cents if move.price_cents is not None else saga.price_cents
        ended = end(conn, saga.order_id, move.ends,
                    None if move.ends is OrderStatus.CONFIRMED else move.reason, price,
                    trace_id, parent_span)
        if ended is not None:
            made.append(ended)
    return made


class Orchestrator:
    """The sagas' state in orders.db, moved by replies (from orders' step consumer, inside
    its batch's transaction) and by deadlines (the `Deadlines` task)."""

    def __init__(self, step_timeout: float) -> None:
        self.step_timeout = step_timeout

    def reply(self, conn: sqlite3.Connection, reply: Reply, cause: Received) -> list[Event]:
        """A participant's reply (inside the step consumer's transaction)."""
        row = conn.execute(f"{_SAGA} WHERE s.order_id = ?", (reply.order_id,)).fetchone()
        if row is None:
            return []  # no saga of ours: a reply for another sandbox's orders, or forged
        saga = _saga(row)
        move = transition(saga, reply)
        if move is None:
            return []
        return _move(conn, saga, move, self.step_timeout, cause.trace_id, cause.parent_span)

    def give_up_overdue(self, conn: sqlite3.Connection, now: float) -> list[Event]:
        """Every saga whose step is past its deadline, undone (inside a transaction)."""
        made: list[Event] = []
        for row in conn.execute(f"{_SAGA} WHERE s.deadline <= ?", (now,)).fetchall():
            saga = _saga(row)
            move = overdue(saga, self.step_timeout)
            if move is not None:
                made += _move(conn, saga, move, self.step_timeout, saga.trace_id,
                              saga.parent_span)
        return made

    def next_deadline(self, conn: sqlite3.Connection) -> float | None:
        # the WHERE lets SQLite take the first row of the partial index: without it, min()
        # would read every saga ever begun, once a second
        (deadline,) = conn.execute("SELECT min(deadline) FROM sagas "
                                   "WHERE deadline IS NOT NULL").fetchone()
        return float(deadline) if deadline is not None else None


class Deadlines:
    """The task that gives up on the steps not answered in time: it wakes at the next
    deadline (at least once a second: a saga begun meanwhile is found then), and undoes
    the overdue sagas in one transaction with their compensations' commands."""

    LOOK_AT_LEAST_EVERY = 1.0

    def __init__(self, orchestrator: Orchestrator, conn: Callable[[], sqlite3.Connection],
                 outbox: Outbox, tasks: Tasks) -> None:
        self.orchestrator = orchestrator
        self._conn = conn
        self.outbox = outbox
        self.tasks = tasks
        self._task: Task | None = None

    async def start(self) -> None:
        self._task = self.tasks.run("sagas", self._run)

    async def close(self) -> None:
        if self._task is not None:
            await self._task.stop()

    def sweep(self, now: float | None = None) -> int:
        """Give up on the overdue steps now; how many events that sent."""
        conn = self._conn()
        with self.outbox.transaction(conn):
            made = self.orchestrator.give_up_overdue(conn, time.time() if now is None
                                                     else now)
            self.outbox.add(conn, made)
        if made:
            self.outbox.wake()
        return len(made)

    async def _run(self) -> None:
        while True:
            conn = self._conn()
            next_at = self.orchestrator.next_deadline(conn)
            now = time.time()
            if next_at is not None and next_at <= now:
                self.sweep(now)
                if self._task is not None:
                    self._task.recovered()
                continue
            pause = self.LOOK_AT_LEAST_EVERY if next_at is None else min(
                next_at - now, self.LOOK_AT_LEAST_EVERY)
            await asyncio.sleep(max(pause, 0.005))


