"""The sagas in flight as the dashboard lists them, in process: each step put together
from what products and users said (or what cannot be told, one of them silent), asked at
most once a second; and what a participant answers of its own file (POST
/saga/progress). Against the real processes: tests/e2e/test_dashboard_ask.py."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest

from msshop.contracts import events
from msshop.contracts.ledgers import STOCK
from msshop.contracts.saga_progress import (
    Done,
    InFlightSaga,
    PendingPurchase,
    ProgressAsked,
    SagasInFlight,
)
from msshop.contracts.status import InFlight
from msshop.runtime.platform import ledger
from msshop.runtime.platform.saga_progress import progress
from msshop.runtime.services.dashboard.sagas import EVERY, Sagas, choreographed_step
from msshop.runtime.services.products import MIGRATIONS

DOWN = "not running (connection refused)"
PLACED, TAKEN, REFUSED = events.ORDER_PLACED, events.STOCK_TAKEN, events.CREDIT_REFUSED


def said(products: Done | str, users: Done | str) -> dict[str, dict[int, Done] | str]:
    return {name: answer if isinstance(answer, str) else {answer.order_id: answer}
            for name, answer in (("products", products), ("users", users))}


@pytest.mark.parametrize(("products", "users", "expected"), [
    # both say: the step, as `msshop sagas` puts it together from the files
    (Done(7, [], None), Done(7, [], None), ("placed; the stock not taken yet", "products")),
    (Done(7, [PLACED], True), Done(7, [TAKEN], True),
     ("the stock and the credit taken; not confirmed yet", "orders")),
    # users silent: products alone tells, unless it took the stock
    (Done(7, [], None), DOWN, ("placed; the stock not taken yet", "products")),
    (Done(7, [PLACED], None), DOWN, ("the stock refused; not rejected yet", "orders")),
    (Done(7, [PLACED, REFUSED], False), DOWN,
     ("the credit refused, the stock given back; not rejected yet", "orders")),
    (Done(7, [PLACED], True), DOWN,
     ("the stock taken; whether users took the credit cannot be told: users " + DOWN, "")),
    # products silent: users holding the credit tells; anything else does not
    (DOWN, Done(7, [TAKEN], True),
     ("the stock and the credit taken; not confirmed yet", "orders")),
    (DOWN, Done(7, [], None),
     (f"cannot be told: products {DOWN} (no one service knows where a choreographed saga "
      "is)", "")),
    (DOWN, Done(7, [TAKEN], None),
     (f"cannot be told: products {DOWN} (no one service knows where a choreographed saga "
      "is)", "")),
])
def test_a_choreographed_step_is_what_the_participants_say(
        products: Done | str, users: Done | str, expected: tuple[str, str]) -> None:
    assert choreographed_step(7, said(products, users)) == expected


def test_an_order_a_participant_did_not_name_is_one_it_has_done_nothing_for() -> None:
    assert choreographed_step(7, {"products": {}, "users": {}}) == (
        "placed; the stock not taken yet", "products")


class FakeParts:
    """orders' GET /sagas and the participants' POST /saga/progress, as recorded answers."""

    def __init__(self, sagas: list[InFlightSaga]) -> None:
        self.sagas = sagas
        self.asked: list[tuple[str, str]] = []
        self.products: dict[str, Any] | str = {"service": "products", "done": []}

    async def __call__(self, name: str, method: str, path: str, body: bytes | None,
                      headers: dict[str, str]) -> dict[str, Any] | str:
        assert headers == {"authorization": "Bearer owner-secret"}
        self.asked.append((name, path))
        if name == "orders":
            listed: dict[str, Any] = msgspec.to_builtins(SagasInFlight(len(self.sagas),
                                                                       self.sagas))
            return listed
        assert body is not None
        asked = msgspec.json.decode(body, type=ProgressAsked)
        if name == "products":
            return self.products
        return {"service": "users", "done": [
            {"order_id": p.order_id, "steps": [], "held": None} for p in asked.purchases]}


def counted(choreographed: int, orchestrated: dict[str, int]) -> InFlight:
    return {"saga": choreographed, "saga_orchestrated": orchestrated}


def test_the_list_is_asked_at_most_once_a_second_and_only_with_sagas_in_flight() -> None:
    parts = FakeParts([InFlightSaga(3, "p-3", 1, 2, 1, "saga", 100.0),
                       InFlightSaga(4, "p-4", 1, 2, 1, "saga-orchestrated", 100.0,
                                    "taking-credit", 112.0)])
    sagas = Sagas("owner-secret")

    async def look(count: InFlight | None, now: float) -> None:
        await sagas.update(count, parts, now)

    asyncio.run(look(counted(0, {}), 101.0))
    assert parts.asked == [] and sagas.shown == []
    asyncio.run(look(counted(1, {"taking-credit": 1}), 102.0))
    assert parts.asked == [("orders", "/sagas?limit=10"), ("products", "/saga/progress"),
                           ("users", "/saga/progress")]
    assert [(s.order_id, s.waits_for, s.age_seconds) for s in sagas.shown] == [
        (3, "products", 2.0), (4, "users", 2.0)]
    assert sagas.shown[1].step == ("the stock taken; TakeCredit sent, no answer yet "
                                   "(given up on in 10.0 s)")
    parts.products = DOWN  # products stops: said at the next asking, not before
    asyncio.run(look(counted(1, {"taking-credit": 1}), 102.0 + EVERY / 2))
    assert len(parts.asked) == 3 and sagas.shown[0].waits_for == "products"
    asyncio.run(look(counted(1, {"taking-credit": 1}), 102.0 + EVERY))
    assert sagas.shown[0].step.startswith(f"cannot be told: products {DOWN}")
    asyncio.run(look(None, 104.0))  # orders silent: the last known stay
    assert len(sagas.shown) == 2
    asyncio.run(look(counted(0, {}), 105.0))
    assert sagas.shown == []


def test_without_the_owner_s_token_the_page_has_the_counts_alone() -> None:
    parts = FakeParts([InFlightSaga(3, "p-3", 1, 2, 1, "saga", 100.0)])
    sagas = Sagas(None)
    asyncio.run(sagas.update(counted(1, {}), parts, 101.0))
    assert parts.asked == [] and sagas.shown == []


def test_a_participant_says_what_it_did_from_its_own_file(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "products.db", isolation_level=None)
    for migration in MIGRATIONS:
        conn.executescript(migration)
    conn.execute("INSERT INTO products (id, sku, title, price_cents, stock, updated_at) "
                 "VALUES (1, 'sku-1', 'One', 100, 5, 0)")
    ledger.take(conn, STOCK, [ledger.Take("p-1", 1, 2), ledger.Take("p-2", 1, 1)])
    ledger.give_back(conn, STOCK, ["p-2"])
    conn.executemany("INSERT INTO saga_steps (order_id, step, done_at) VALUES (?, ?, ?)",
                     [(1, PLACED, 1.0), (2, PLACED, 2.0), (2, REFUSED, 3.0)])
    asked = ProgressAsked([PendingPurchase(2, "p-2"), PendingPurchase(1, "p-1"),
                           PendingPurchase(9, "p-9")])
    assert progress(conn, STOCK, asked) == [
        Done(2, [PLACED, REFUSED], False), Done(1, [PLACED], True), Done(9, [], None)]
