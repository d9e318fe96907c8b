"""The read model's consumer on a real SQLite file: duplicates, reordering and poison."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import msgspec
import pytest

from msshop.contracts import events
from msshop.contracts.events import Delivered
from msshop.contracts.shop import OrderStatus
from msshop.runtime.platform.consumer import Consumer
from msshop.runtime.platform.db import open_database, statements
from msshop.runtime.services.query import MIGRATIONS, projection
from tests.fakes import MemoryBus
from tests.unit.test_protocol import made_by_the_saga


def delivered(*pairs: tuple[int, events.Event | bytes]) -> list[Delivered]:
    return [Delivered(position, msgspec.Raw(e if isinstance(e, bytes) else events.encode(e)))
            for position, e in pairs]


def fresh_read_model(folder: Path) -> tuple[sqlite3.Connection, Consumer]:
    """A new query.db on disk and the consumer that fills it (no bus: batches are handed in)."""
    conn = open_database(folder / "query.db", MIGRATIONS)
    return conn, Consumer("query", lambda: conn, MemoryBus(), projection.apply)


def test_duplicates_and_late_events_change_nothing(tmp_path: Path) -> None:
    conn, consumer = fresh_read_model(tmp_path)
    user = events.make(events.USER_SIGNED_UP, "users", 1, 1,
                       {"id": 1, "email": "a@example.com", "name": "A"}, None)
    created = events.make(events.PRODUCT_CREATED, "products", 7, 1,
                          {"id": 7, "title": "Hat", "price": 10.0}, None)
    renamed = events.make(events.PRODUCT_UPDATED, "products", 7, 2,
                          {"id": 7, "title": "Red hat", "price": 12.5}, None)
    order = events.make(events.ORDER_PLACED, "orders", 3, 1, {
        "id": 3, "user_id": 1, "product_id": 7, "quantity": 2, "unit_price": 10.0}, None)

    consumer.apply_batch(delivered((1, user), (2, order), (3, renamed), (4, created)))
    consumer.apply_batch(delivered((2, order), (3, renamed), (4, created)))  # delivered again

    assert conn.execute("SELECT title, price_cents, version FROM products_replica").fetchall() \
        == [("Red hat", 1250, 2)], "the late version 1 did not overwrite version 2"
    assert conn.execute("SELECT count(*) FROM orders_replica").fetchone() == (1,)
    assert conn.execute("SELECT position FROM consumer_offsets").fetchone() == (4,)
    assert consumer.dead == 0


def test_poison_goes_to_dead_letters_and_the_batch_goes_on(tmp_path: Path) -> None:
    conn, consumer = fresh_read_model(tmp_path)
    good = events.make(events.USER_SIGNED_UP, "users", 2, 1,
                       {"id": 2, "email": "b@example.com", "name": "B"}, None)
    wrong_id = events.make(events.USER_SIGNED_UP, "users", 3, 1,
                           {"id": 4, "email": "c@example.com", "name": "C"}, None)
    consumer.apply_batch(delivered((1, b"{not json"), (2, wrong_id), (3, good)))
    reasons = dict(conn.execute("SELECT position, reason FROM dead_letters").fetchall())
    assert reasons[1].startswith("not an event: ")
    assert reasons[2] == "UserSignedUp data id 4 is not its aggregate_id 3"
    assert conn.execute("SELECT id FROM users_replica").fetchall() == [(2,)]
    assert consumer.position == 3 and consumer.dead == 2


def test_an_order_before_its_product_gets_the_title_when_the_product_arrives(tmp_path: Path
                                                                            ) -> None:
    conn, consumer = fresh_read_model(tmp_path)
    order = events.make(events.ORDER_PLACED, "orders", 9, 1, {
        "id": 9, "user_id": 1, "product_id": 5, "quantity": 1, "unit_price": 3.0}, None)
    created = events.make(events.PRODUCT_CREATED, "products", 5, 1,
                          {"id": 5, "title": "Sock", "price": 3.0}, None)
    renamed = events.make(events.PRODUCT_UPDATED, "products", 5, 2,
                          {"id": 5, "title": "Wool sock", "price": 4.0}, None)

    def copied() -> tuple[object, ...]:
        row: tuple[object, ...] = conn.execute(
            "SELECT title, product_position, product_version FROM orders_replica").fetchone()
        return row

    consumer.apply_batch(delivered((1, order)))
    assert copied() == (None, None, None), "the product has not arrived yet"
    consumer.apply_batch(delivered((2, created)))
    assert copied() == ("Sock", 2, 1)
    consumer.apply_batch(delivered((3, renamed), (4, created)))  # the late copy loses
    assert copied() == ("Wool sock", 3, 2)
    assert conn.execute("SELECT unit_price_cents FROM orders_replica").fetchone() == (300,), \
        "the price paid stays the price paid"


def test_a_bulk_rebuild_ends_with_the_tables_the_live_projection_builds(tmp_path: Path
                                                                        ) -> None:
    """A rebuild defers the product copies to one statement at the end: for any log (late
    creations, renames after orders, orders before their product, duplicates) the result
    must equal what applying the events one by one gives."""
    rng = random.Random(5)
    log: list[events.Event] = []
    versions: dict[int, int] = {}
    for n in range(1, 600):
        roll = rng.random()
        if roll < 0.1:
            log.append(events.make(events.USER_SIGNED_UP, "users", n, 1,
                                   {"id": n, "email": f"u{n}@example.com", "name": f"U{n}"},
                                   None))
        elif roll < 0.3:
            product = rng.randint(1, 12)
            versions[product] = versions.get(product, 0) + 1
            kind = events.PRODUCT_CREATED if versions[product] == 1 else events.PRODUCT_UPDATED
            log.append(events.make(kind, "products", product, versions[product], {
                "id": product, "title": f"P{product} v{versions[product]}", "price": 1.5}, None))
        else:
            log.append(events.make(events.ORDER_PLACED, "orders", n, 1, {
                "id": n, "user_id": rng.randint(1, 40), "product_id": rng.randint(1, 14),
                "quantity": 1, "unit_price": 2.0}, None))
    rng.shuffle(log)  # relays race: any order across and within aggregates
    log += rng.sample(log, 50)  # and some events delivered twice
    batch = delivered(*enumerate(log, start=1))

    live, consumer = fresh_read_model(tmp_path / "live")
    consumer.apply_batch(batch)
    bulk, _ = fresh_read_model(tmp_path / "bulk")
    shadow = projection.Projection("_next", bulk=True)
    shadow.BULK_ORDERS = 7  # held orders go in many times, not only at finish()
    for statement in statements(shadow.schema):
        bulk.execute(statement)
    rebuilder = Consumer("rebuild", lambda: bulk, MemoryBus(), shadow.apply)
    rebuilder.apply_batch(batch)
    shadow.finish(bulk)

    for name, table in shadow.tables.items():
        live_table = projection.LIVE.tables[name]
        key = "user_id, id" if name == "orders" else "id"
        assert bulk.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall() == \
            live.execute(f"SELECT * FROM {live_table} ORDER BY {key}").fetchall(), name
    assert bulk.execute("SELECT count(title) FROM orders_replica_next").fetchone()[0] > 0


@pytest.mark.parametrize(("event_type", "sender"), [
    (event_type, sender) for event_type, owner in events.OWNERS.items()
    for sender in ("users", "products", "orders") if sender != owner])
def test_an_event_from_a_service_that_does_not_own_its_type_is_dead_lettered(
        tmp_path: Path, event_type: str, sender: str) -> None:
    """If one gets past a bus (both refuse it; tests/e2e/test_trust.py), the read model
    still does not apply it: a type comes from its owner only (events.OWNERS)."""
    conn, consumer = fresh_read_model(tmp_path)
    samples: dict[str, dict[str, object]] = {
        events.USER_SIGNED_UP: {"id": 9, "email": "o@example.com", "name": "O"},
        events.PRODUCT_CREATED: {"id": 9, "title": "Owned", "price": 1.0},
        events.PRODUCT_UPDATED: {"id": 9, "title": "Owned", "price": 1.0},
        events.ORDER_PLACED: {"id": 9, "user_id": 1, "product_id": 1, "quantity": 1,
                              "unit_price": 1.0},
        **{e.type: e.data for e in made_by_the_saga()},
    }
    data = samples[event_type]
    consumer.apply_batch(delivered((1, events.make(event_type, sender, 9, 2 ** 62, data,
                                                   None))))
    assert conn.execute("SELECT reason FROM dead_letters").fetchall() == [
        (f"a {event_type} comes only from {events.OWNERS[event_type]}, but {sender} sent it",)]
    assert all(conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
               for table in projection.TABLES), "nothing applied"


def test_every_event_type_has_its_owner() -> None:
    assert set(events.OWNERS) == set(events.CATALOGUE)
    assert set(events.OWNERS.values()) <= {"users", "products", "orders"}


# --- issue 26: an order's status ----------------------------------------------------------

def saga_order(status: OrderStatus, reason: str | None = None, order_id: int = 11,
               price_cents: int = 2500) -> events.Event:
    """A saga's order as orders records it: placed pending (v1, price 0), or its outcome
    (v2, its whole state)."""
    if status is OrderStatus.PENDING:
        return events.order_placed(order_id, 1, 7, 2, 0, 1.0, purchase=f"p{order_id}",
                                   status=OrderStatus.PENDING)
    return events.order_ended(order_id, 1, 7, 2, price_cents, f"p{order_id}", status, reason)


def statuses(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return conn.execute("SELECT id, status, reason, unit_price_cents, version "
                        "FROM orders_replica ORDER BY id").fetchall()


def test_an_order_placed_without_a_status_is_confirmed(tmp_path: Path) -> None:
    conn, consumer = fresh_read_model(tmp_path)
    old = events.make(events.ORDER_PLACED, "orders", 3, 1, {
        "id": 3, "user_id": 1, "product_id": 7, "quantity": 2, "unit_price": 10.0}, None)
    consumer.apply_batch(delivered((1, old), (2, saga_order(OrderStatus.PENDING))))
    assert statuses(conn) == [(3, "confirmed", None, 1000, 1), (11, "pending", None, 0, 1)]


@pytest.mark.parametrize("ended", [OrderStatus.CONFIRMED, OrderStatus.REJECTED])
def test_an_outcome_wins_over_its_order_placed_in_either_order(tmp_path: Path,
                                                               ended: OrderStatus) -> None:
    """Nothing orders OrderPlaced and its outcome on the bus against each other for a
    reader: v2 over v1 is applied, a v1 after a v2 changes nothing, a v2 again nothing."""
    reason = None if ended is OrderStatus.CONFIRMED else "out of stock"
    placed, outcome = saga_order(OrderStatus.PENDING), saga_order(ended, reason)
    price = 2500  # the outcome says the price (a credit refusal says it too)
    in_order, _ = fresh_read_model(tmp_path / "in-order")
    out_of_order, consumer = fresh_read_model(tmp_path / "out-of-order")
    Consumer("query", lambda: in_order, MemoryBus(), projection.apply).apply_batch(
        delivered((1, placed), (2, outcome)))
    consumer.apply_batch(delivered((1, outcome)))
    assert statuses(out_of_order) == [(11, ended.value, reason, price, 2)], \
        "an outcome first is kept: the order's whole state"
    consumer.apply_batch(delivered((2, placed), (3, outcome), (4, placed)))
    for conn in (in_order, out_of_order):
        assert statuses(conn) == [(11, ended.value, reason, price, 2)]
    assert consumer.dead == 0


def test_the_sagas_steps_are_skipped_not_dead_lettered(tmp_path: Path) -> None:
    conn, consumer = fresh_read_model(tmp_path)
    steps = [e for e in made_by_the_saga() if e.type in events.STEP_VERSION]
    consumer.apply_batch(delivered(*enumerate(steps, start=1)))
    assert consumer.dead == 0 and consumer.position == len(steps)
    assert all(conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
               for table in projection.TABLES), "a step writes nothing"


@pytest.mark.parametrize(("event", "said"), [
    (events.make(events.ORDER_PLACED, "orders", 5, 1, {
        "id": 5, "user_id": 1, "product_id": 7, "quantity": 1, "unit_price": 1.0,
        "status": "rejected"}, None), "OrderPlaced says its order is rejected"),
    (events.make(events.ORDER_CONFIRMED, "orders", 5, 2, {
        "id": 5, "user_id": 1, "product_id": 7, "quantity": 1, "unit_price": 1.0,
        "status": "pending"}, None), "OrderConfirmed says its order is pending"),
    (events.make(events.ORDER_REJECTED, "orders", 5, 2, {
        "id": 5, "user_id": 1, "product_id": 7, "quantity": 1, "unit_price": 1.0,
        "status": "lost", "reason": "x"}, None), "OrderRejected says its order is lost"),
])
def test_an_order_event_whose_status_cannot_be_is_dead_lettered(
        tmp_path: Path, event: events.Event, said: str) -> None:
    conn, consumer = fresh_read_model(tmp_path)
    consumer.apply_batch(delivered((1, event)))
    (reason,) = conn.execute("SELECT reason FROM dead_letters").fetchone()
    assert reason.startswith(said)
    assert conn.execute("SELECT count(*) FROM orders_replica").fetchone() == (0,)


def test_a_rebuild_gives_the_statuses_the_live_read_model_has(tmp_path: Path) -> None:
    """Placed, confirmed and rejected orders, each outcome before or after its OrderPlaced,
    with the steps between and the product renamed after: the rebuild's tables equal the
    live ones, and a file made before issue 26 migrates to the same shape."""
    rng = random.Random(26)
    log: list[events.Event] = [events.make(events.PRODUCT_CREATED, "products", 7, 1, {
        "id": 7, "title": "Hat", "price": 25.0}, None)]
    for order_id in range(1, 200):
        ended = rng.choice([None, OrderStatus.CONFIRMED, OrderStatus.REJECTED])
        pair = [saga_order(OrderStatus.PENDING, order_id=order_id)]
        if ended is not None:
            pair.append(saga_order(ended, "out of stock" if ended is OrderStatus.REJECTED
                                   else None, order_id=order_id))
            rng.shuffle(pair)
        log += pair
    log += made_by_the_saga()[:5]
    log.append(events.make(events.PRODUCT_UPDATED, "products", 7, 2, {
        "id": 7, "title": "Red hat", "price": 30.0}, None))
    batch = delivered(*enumerate(log, start=1))

    # a file made before the status columns: migrations 1 and 2 first, then the rest
    before = open_database(tmp_path / "before.db", MIGRATIONS[:2])
    before.close()
    live = open_database(tmp_path / "before.db", MIGRATIONS)
    Consumer("query", lambda: live, MemoryBus(), projection.apply).apply_batch(batch)
    bulk, _ = fresh_read_model(tmp_path / "bulk")
    shadow = projection.Projection("_next", bulk=True)
    shadow.BULK_ORDERS = 13
    for statement in statements(shadow.schema):
        bulk.execute(statement)
    rebuilder = Consumer("rebuild", lambda: bulk, MemoryBus(), shadow.apply)
    rebuilder.apply_batch(batch)
    shadow.finish(bulk)
    assert rebuilder.dead == 0
    got = bulk.execute("SELECT * FROM orders_replica_next ORDER BY user_id, id").fetchall()
    assert got == live.execute("SELECT * FROM orders_replica ORDER BY user_id, id").fetchall()
    assert {row[-3] for row in got} == {"pending", "confirmed", "rejected"}  # status
    assert {row[8] for row in got} == {"Red hat"}, "every copy is the product's last"
