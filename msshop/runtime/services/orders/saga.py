"""Orders' steps of the saga: end a pending order when products and users have said.

(The orchestrated saga's replies, the same events with `reply_to` set, go to
orchestration.py's Orchestrator instead.)

    CreditTaken     -> confirmed, at the unit price products took the stock at
    StockRefused    -> rejected with the reason (nothing was taken)
    CreditRefused   -> still pending (the stock is not back yet), but now with its price
    StockGivenBack  -> rejected with the credit refusal's reason (the stock is back)

An order ends once: the UPDATE touches it only while it is pending. Each end writes
OrderConfirmed / OrderRejected (the order's version 2) in the same transaction, and wakes
whoever waits for it (GET /orders/{id}?wait_ms=).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any, TypeVar

from msshop.contracts import events
from msshop.contracts.events import (
    CreditGivenBackData,
    CreditRefusedData,
    CreditTakenData,
    Event,
    Received,
    StockGivenBackData,
    StockRefusedData,
    StockTakenData,
)
from msshop.contracts.shop import OrderStatus
from msshop.runtime.platform.saga import Step, is_reply

if TYPE_CHECKING:
    from msshop.runtime.services.orders.orchestration import Orchestrator

T = TypeVar("T")
ENDED = ("id, user_id, product_id, quantity, unit_price_cents, request_id")


def end(conn: sqlite3.Connection, order_id: int, status: OrderStatus, reason: str | None,
        price_cents: int | None, trace_id: str | None, parent_span: str | None
        ) -> Event | None:
    """End a pending order; its OrderConfirmed / OrderRejected (None: it was not pending)."""
    row = conn.execute(
        "UPDATE orders SET status = ?, reason = ?, "
        "unit_price_cents = coalesce(?, unit_price_cents) "
        f"WHERE id = ? AND status = ? RETURNING {ENDED}",
        (status.value, reason, price_cents, order_id, OrderStatus.PENDING.value)).fetchone()
    if row is None:
        return None
    return events.order_ended(row[0], row[1], row[2], row[3], row[4], row[5] or "", status,
                              reason, trace_id, parent_span)


def confirm(conn: sqlite3.Connection, taken: CreditTakenData, cause: Received
            ) -> Event | None:
    return end(conn, taken.order_id, OrderStatus.CONFIRMED, None,
               round(taken.unit_price * 100), cause.trace_id, cause.parent_span)


def refused(conn: sqlite3.Connection, refusal: StockRefusedData, cause: Received
            ) -> Event | None:
    return end(conn, refusal.order_id, OrderStatus.REJECTED, refusal.reason, None,
               cause.trace_id, cause.parent_span)


def priced(conn: sqlite3.Connection, refusal: CreditRefusedData, cause: Received
           ) -> Event | None:
    """The price the credit was refused at, on the order still pending: its rejection, once
    the stock is back, shows what it would have cost."""
    conn.execute("UPDATE orders SET unit_price_cents = ? WHERE id = ? AND status = ?",
                 (round(refusal.unit_price * 100), refusal.order_id,
                  OrderStatus.PENDING.value))
    return None


def given_back(conn: sqlite3.Connection, back: StockGivenBackData, cause: Received
               ) -> Event | None:
    return end(conn, back.order_id, OrderStatus.REJECTED, back.reason, None, cause.trace_id,
               cause.parent_span)


R = TypeVar("R", StockTakenData, StockRefusedData, CreditTakenData, CreditRefusedData,
            StockGivenBackData, CreditGivenBackData)
Ends = Callable[[sqlite3.Connection, R, Received], Event | None]


def steps(orchestrator: Orchestrator) -> dict[str, Step[Any]]:
    """Orders' steps of both sagas: a reply (its `reply_to` set) goes to the orchestrator,
    the same event of a choreography ends the order as above."""

    def either(choreography: Ends[R]
               ) -> Callable[[sqlite3.Connection, R, Received], Event | list[Event] | None]:
        def apply(conn: sqlite3.Connection, data: R, cause: Received
                  ) -> Event | list[Event] | None:
            if data.reply_to is not None:
                return orchestrator.reply(conn, data, cause)
            return choreography(conn, data, cause)
        return apply

    return {events.CREDIT_TAKEN: Step(CreditTakenData, either(confirm)),
            events.STOCK_REFUSED: Step(StockRefusedData, either(refused)),
            events.CREDIT_REFUSED: Step(CreditRefusedData, either(priced)),
            events.STOCK_GIVEN_BACK: Step(StockGivenBackData, either(given_back)),
            # the orchestrated saga's alone: a choreography's StockTaken is users' to act on
            events.STOCK_TAKEN: Step(StockTakenData, orchestrator.reply, wanted=is_reply),
            events.CREDIT_GIVEN_BACK: Step(CreditGivenBackData, orchestrator.reply)}


class Ended:
    """Wakes whoever waits for an order's outcome, after each batch of the step consumer
    has committed (an outcome is in the file before anyone is told)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        woken, self._event = self._event, asyncio.Event()
        woken.set()

    async def wait(self, read: Callable[[], T], done: Callable[[T], bool], timeout: float
                   ) -> T:
        """`read()` again after each wake until `done` says so or `timeout` s pass."""
        deadline = time.monotonic() + timeout
        value = read()
        while not done(value):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            event = self._event
            with suppress(TimeoutError):  # asyncio.timeout: see Outbox._run
                async with asyncio.timeout(remaining):
                    await event.wait()
            value = read()
        return value
