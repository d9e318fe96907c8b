"""A participant's steps of the saga (runtime/platform/saga.py) on a real products.db, batches
handed in as the bus would hand them: each step once per order whatever is repeated, the
outcome events in the participant's outbox with the position, confirmed orders and other
types skipped, a step event from a service that does not own its type dead-lettered."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import msgspec

from msshop.contracts import events
from msshop.contracts.events import Delivered
from msshop.contracts.ledgers import STOCK
from msshop.contracts.shop import OrderStatus
from msshop.runtime.platform import ledger
from msshop.runtime.platform.consumer import IDLE_STORE
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.db import Database, open_database
from msshop.runtime.platform.outbox import Outbox
from msshop.runtime.platform.saga import Participant
from msshop.runtime.platform.tasks import Tasks
from msshop.runtime.platform.tracing import Tracer
from msshop.runtime.services import products
from tests.fakes import MemoryBus


def products_db(folder: Path, stock: int) -> tuple[sqlite3.Connection, Participant]:
    """products.db with product 1 (price 2.50, `stock` left) and products' participant."""
    conn = open_database(folder / "products.db", products.MIGRATIONS)
    with conn:
        conn.execute("INSERT INTO products (id, sku, title, price_cents, stock, updated_at) "
                     "VALUES (1, 'HAT', 'Hat', 250, ?, 0)", (stock,))
        ledger.given_at_creation(conn, STOCK, [(1, stock)], 0)
    ctx = cast("ServiceContext", SimpleNamespace(name="products", tracer=Tracer("products"),
                                                 tasks=Tasks("products")))
    db = cast("Database", SimpleNamespace(conn=conn, file_name="products.db"))
    bus = MemoryBus()
    outbox = Outbox("products", lambda: conn, bus)
    return conn, Participant(ctx, db, bus, outbox, products.SAGA_STEPS)


def placed(order_id: int, quantity: int, status: OrderStatus = OrderStatus.PENDING
           ) -> events.Event:
    return events.order_placed(order_id, 7, 1, quantity, 0, time.time(),
                               purchase=f"p{order_id}", status=status)


def refused_credit(order_id: int, source: str = "users") -> events.Event:
    made = events.saga_step(events.CREDIT_REFUSED, events.CreditRefusedData(
        order_id, f"p{order_id}", "not enough credit: user 7 has 1.00, 5.00 asked", 409,
        2.5))
    return msgspec.structs.replace(made, source=source)


def delivered(first: int, *made: events.Event) -> list[Delivered]:
    return [Delivered(first + i, msgspec.Raw(events.encode(e))) for i, e in enumerate(made)]


def outbox(conn: sqlite3.Connection) -> list[tuple[str, int, dict[str, Any]]]:
    return [(kind, aggregate, msgspec.json.decode(body)["data"]) for kind, aggregate, body in
            conn.execute("SELECT type, aggregate_id, body FROM outbox ORDER BY seq")]


def test_each_step_once_and_everything_else_skipped(tmp_path: Path) -> None:
    conn, participant = products_db(tmp_path, stock=3)
    signed_up = events.make(events.USER_SIGNED_UP, "users", 7, 1,
                            {"id": 7, "email": "a@example.com", "name": "A"}, None)
    participant.consumer.apply_batch(delivered(
        1, placed(1, 2), placed(1, 2), placed(2, 5, OrderStatus.CONFIRMED), signed_up,
        placed(3, 2)))
    assert conn.execute("SELECT stock FROM products").fetchone() == (1,)
    assert outbox(conn) == [
        ("StockTaken", 1, {"order_id": 1, "purchase": "p1", "user_id": 7, "product_id": 1,
                           "quantity": 2, "unit_price": 2.5}),
        ("StockRefused", 3, {"order_id": 3, "purchase": "p3", "status": 409,
                             "reason": "out of stock: product 1 has 1, 2 asked"})]
    assert participant.consumer.position == 5
    # the compensation, delivered twice (and the batch again, as after a crash)
    participant.consumer.apply_batch(delivered(6, refused_credit(1), refused_credit(1)))
    participant.consumer.apply_batch(delivered(
        1, placed(1, 2), placed(2, 5, OrderStatus.CONFIRMED), placed(3, 2)))
    assert conn.execute("SELECT stock FROM products").fetchone() == (3,)
    assert [kind for kind, _, _ in outbox(conn)] == [
        "StockTaken", "StockRefused", "StockGivenBack"]
    assert outbox(conn)[2][2]["quantity"] == 2
    assert conn.execute("SELECT order_id, step FROM saga_steps ORDER BY 1, 2").fetchall() == [
        (1, "CreditRefused"), (1, "OrderPlaced"), (3, "OrderPlaced")]
    assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)


def test_a_step_event_from_another_than_its_owner_is_dead_lettered(tmp_path: Path) -> None:
    conn, participant = products_db(tmp_path, stock=3)
    participant.consumer.apply_batch(delivered(1, placed(1, 2), refused_credit(1, "orders")))
    assert conn.execute("SELECT reason FROM dead_letters").fetchall() == [
        ("a CreditRefused comes only from users, but orders sent it",)]
    assert conn.execute("SELECT stock FROM products").fetchone() == (1,), "nothing given back"
    assert [kind for kind, _, _ in outbox(conn)] == ["StockTaken"]


def test_a_batch_of_nothing_to_do_writes_nothing(tmp_path: Path) -> None:
    """Skipped events (a seed's confirmed orders, direct-call's) open no transaction: the
    position moves in memory, stored with the next batch that writes or IDLE_STORE events
    on; a restart reads those again and skips them again."""
    conn, participant = products_db(tmp_path, stock=3)
    consumer = participant.consumer

    def stored() -> int | None:
        row = conn.execute("SELECT position FROM consumer_offsets").fetchone()
        return None if row is None else int(row[0])

    confirmed = [placed(n, 1, OrderStatus.CONFIRMED) for n in range(10, 13)]
    consumer.apply_batch(delivered(1, *confirmed))
    assert (consumer.position, stored(), conn.in_transaction) == (3, None, False)
    consumer.apply_batch(delivered(4, placed(1, 1)))
    assert (consumer.position, stored()) == (4, 4)
    far = IDLE_STORE + 4
    consumer.apply_batch(delivered(far, placed(20, 1, OrderStatus.CONFIRMED)))
    assert (consumer.position, stored()) == (far, far)
    assert consumer.applied == 5 and conn.execute("SELECT stock FROM products").fetchone() \
        == (2,)
