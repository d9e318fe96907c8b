from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from msshop import render
from msshop.cli.app import as_flag
from msshop.contracts import events
from msshop.contracts.errors import InvalidArgument
from msshop.contracts.limits import MAX_BATCH
from msshop.contracts.waiting import Outcome, ServiceWait, WaitReport
from msshop.instruments.client import encode_batch
from msshop.instruments.seed import (
    Replication,
    Seeded,
    SeedPlan,
    SeedReport,
    batches,
    exit_code,
    made_ahead,
    make_orders,
    make_products,
    make_users,
    not_replicated,
    replication_from,
    wait_timeout,
)
from msshop.runtime.platform.db import open_database
from msshop.runtime.platform.outbox import OUTBOX_SCHEMA, OUTBOX_TRACE_COLUMN, Outbox, mark_sent
from tests.fakes import MemoryBus


def test_same_seed_same_data_and_more_keeps_the_first() -> None:
    small, large = SeedPlan(10, 5, 20, seed=3), SeedPlan(50, 9, 200, seed=3)
    assert make_users(small) == make_users(SeedPlan(10, 5, 20, seed=3))
    assert make_users(large)[:10] == make_users(small)
    assert make_products(large)[:5] == make_products(small)
    ids = list(range(1, 11)), list(range(1, 6))
    assert list(make_orders(large, *ids))[:20] == list(make_orders(small, *ids))


def test_another_seed_other_data_with_other_natural_keys() -> None:
    a, b = SeedPlan(10, 5, 20, seed=1), SeedPlan(10, 5, 20, seed=2)
    assert {u["name"] for u in make_users(a)} != {u["name"] for u in make_users(b)}
    assert not {p["sku"] for p in make_products(a)} & {p["sku"] for p in make_products(b)}
    ids = [1, 2], [1]
    assert not ({o["request_id"] for o in make_orders(a, *ids)}
                & {o["request_id"] for o in make_orders(b, *ids)})


def test_data_is_realistic_and_valid_for_the_services() -> None:
    plan = SeedPlan(200, 100, 2000, seed=42)
    users = make_users(plan)
    assert len({u["email"] for u in users}) == 200
    assert all("@example.com" in u["email"] and " " in u["name"] for u in users)
    products = make_products(plan)
    assert all(p["price"] > 0 and round(p["price"], 2) == p["price"] for p in products)
    assert any("hat" in p["title"].lower() or "beanie" in p["title"].lower()
               for p in products)
    orders = list(make_orders(plan, list(range(1, 201)), list(range(1, 101))))
    per_user: dict[int, int] = {}
    for order in orders:
        per_user[order["user_id"]] = per_user.get(order["user_id"], 0) + 1
        assert 1 <= order["quantity"] <= 5
    busiest = sorted(per_user.values(), reverse=True)
    assert busiest[0] > 5 * (2000 / 200), "a few people buy a lot"


def test_batches() -> None:
    assert list(batches([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert list(batches([], 2)) == []


def test_batches_takes_any_iterable_as_it_comes() -> None:
    made = (n for n in range(7))
    assert list(batches(made, 3)) == [[0, 1, 2], [3, 4, 5], [6]]


def test_made_ahead_gives_every_item_in_order_and_raises_what_the_making_raised() -> None:
    assert list(made_ahead(iter(range(50)), depth=2)) == list(range(50))

    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("no more")

    taken = []
    with pytest.raises(ValueError, match="no more"):
        for item in made_ahead(failing()):
            taken.append(item)
    assert taken == [1]


def test_made_ahead_stops_making_when_the_caller_stops() -> None:
    made: list[int] = []

    def endless() -> Iterator[int]:
        for n in itertools.count():
            made.append(n)
            yield n

    before = threading.active_count()
    ahead = made_ahead(endless(), depth=2)
    assert next(ahead) == 0
    ahead.close()  # the caller is done (or failed): the thread ends, no more is made
    assert threading.active_count() == before
    assert len(made) <= 4  # the one taken, two waiting, one being put


def test_batches_are_encoded_as_the_services_take_them() -> None:
    orders = list(make_orders(SeedPlan(3, 2, 5, seed=1), [1, 2, 3], [1, 2]))
    batch = encode_batch("orders", orders)
    assert (batch.what, batch.size) == ("orders", 5)
    assert json.loads(batch.body) == {"orders": orders}


def looked(outcome: Outcome, pending: int = 0, behind: int | None = 0,
           query_status: str = "running") -> WaitReport:
    """A look of `msshop wait --for caught-up`, as waiting.until reports it."""
    services: list[ServiceWait] = [
        {"name": "users", "status": "running", "health": "ok", "ready": True, "why": None,
         "pending": 0},
        {"name": "orders", "status": "running", "health": "ok", "ready": not pending,
         "why": f"{pending:,} events not on the bus yet" if pending else None,
         "pending": pending}]
    query: ServiceWait = {"name": "query", "status": query_status, "health": "ok",
                          "ready": not behind, "why": None}
    if behind is not None:
        query["behind"] = behind
    missing = ([f"orders: {pending:,} events not on the bus yet"] if pending else []) + (
        [f"query: {behind:,} events behind"] if behind else []) + (
        [f"query: {query_status}"] if query_status != "running" else [])
    return {"condition": "caught-up", "reached": outcome == "reached", "outcome": outcome,
            "waited_ms": 1.0, "timeout_s": 0.0, "sandbox": "/s", "services": [*services, query],
            "missing": missing, "bus_head": 1000}


def test_a_look_in_the_seeds_words() -> None:
    caught_up = replication_from(looked("reached"), waited_ms=0.0, time_is_up=False)
    assert caught_up == {"caught_up": True, "state": "caught-up", "backlog": 0, "behind": 0,
                         "bus_head": 1000, "waited_ms": 0.0, "missing": [], "down": []}
    behind = replication_from(looked("timed-out", pending=300, behind=700), 0.0, False)
    assert (behind["state"], behind["backlog"], behind["behind"], not_replicated(behind)) == (
        "catching-up", 300, 700, 1000)
    assert replication_from(looked("timed-out", behind=5), 1500.04, True)["state"] == "timed-out"
    down = replication_from(looked("service-down", behind=None, query_status="stopped"), 0, False)
    assert (down["state"], down["behind"], down["down"]) == ("service-down", None, ["query"])


def report_with(replication: Replication) -> SeedReport:
    kind: Seeded = {"created": 2000, "existing": 0, "seconds": 0.05, "rate": 40000.0}
    return {"plan": {"users": 200, "products": 60, "orders": 2000, "seed": 42},
            "users": {"created": 200, "existing": 0, "seconds": 0.01, "rate": 20000.0},
            "products": {"created": 0, "existing": 60, "seconds": 0.0, "rate": 0.0},
            "orders": kind, "seconds": 0.07, "replication": replication}


def test_exit_codes_are_those_of_msshop_wait_and_only_with_wait() -> None:
    codes: tuple[tuple[Outcome, int], ...] = (
        ("reached", 0), ("timed-out", 3), ("service-down", 1), ("no-sandbox", 1))
    for outcome, code in codes:
        report = report_with(replication_from(looked(outcome), 0.0, time_is_up=True))
        assert exit_code(report, waited=True) == code, outcome
        assert exit_code(report, waited=False) == 0


def test_wait_timeout_is_checked_before_anything_is_sent() -> None:
    assert wait_timeout(False, None) is None
    assert wait_timeout(True, None) == 600.0
    assert wait_timeout(True, 0) == 0
    with pytest.raises(InvalidArgument) as refused:
        wait_timeout(False, 5)
    assert "--timeout is how long --wait waits" in refused.value.worded(as_flag)
    with pytest.raises(InvalidArgument, match="out of range"):
        wait_timeout(True, -1)


def captured() -> Console:
    return Console(width=80, record=True, color_system=None, force_terminal=False)


def test_the_report_says_where_replication_is() -> None:
    out = captured()
    render.seed_report(out, report_with(replication_from(
        looked("timed-out", pending=300, behind=700), 0.0, False)), waited=False)
    lines = out.export_text().splitlines()
    assert lines[:3] == [
        "users          200 created,        0 already there,   0.01 s (20,000/s)",
        "products         0 created,       60 already there,   0.00 s (0/s)",
        "orders       2,000 created,        0 already there,   0.05 s (40,000/s)"]
    assert " ".join(" ".join(lines[3:]).split()) == (
        "replication is catching up, the read model does not have every event yet: orders: "
        "300 events not on the bus yet; query: 700 events behind; wait for it with: msshop "
        "wait --for caught-up (or seed with --wait)")
    out = captured()
    render.seed_report(out, report_with(replication_from(looked("reached"), 1234.5, True)),
                       waited=True)
    assert out.export_text().splitlines()[-1] == (
        "the read model caught up in 1.2 s, at bus position 1,000")


def test_the_relay_marks_a_seeds_rows_sent_at_their_positions_in_a_row_or_apart(
        tmp_path: Path) -> None:
    """A seed's backlog goes to the bus 10,000 rows at a time: consecutive rows stored one
    after another are marked by one statement; rows whose positions are apart (a repeat
    keeps its first; on NATS another service's events come between) one by one."""
    conn = open_database(tmp_path / "orders.db", [OUTBOX_SCHEMA, OUTBOX_TRACE_COLUMN])
    outbox = Outbox("orders", lambda: conn, MemoryBus())
    with outbox.transaction(conn):
        outbox.add(conn, [events.make(events.ORDER_PLACED, "orders", n, 1, {
            "id": n, "user_id": 1, "product_id": 1, "quantity": 1, "unit_price": 1.0}, None)
            for n in range(1, 7)])
    mark_sent(conn, [1, 2, 3], [41, 42, 43])
    mark_sent(conn, [4, 5], [44, 9])  # the fifth was on the bus already, at 9
    assert conn.execute("SELECT seq, position, sent_at IS NOT NULL FROM outbox ORDER BY seq"
                        ).fetchall() == [(1, 41, 1), (2, 42, 1), (3, 43, 1), (4, 44, 1),
                                         (5, 9, 1), (6, None, 0)]
    assert outbox.pending() == 1


def test_what_the_orders_take_is_given_once_and_nothing_without_orders() -> None:
    from msshop.instruments.seed import make_orders, restock

    plan = SeedPlan(users=3, products=2, orders=50, seed=7)
    prices = {10: 250, 20: 100}
    given = restock(plan, [1, 2, 3], [10, 20], prices)
    (stock_body,), (credit_body,) = given.stock, given.credit
    stock = json.loads(stock_body)
    taken: dict[int, int] = {}
    for order in make_orders(plan, [1, 2, 3], [10, 20]):
        taken[order["product_id"]] = taken.get(order["product_id"], 0) + order["quantity"]
    assert {p["id"]: p["quantity"] for p in stock["products"]} == taken
    assert stock["key"] == "seed7-orders-3x2x50" == json.loads(credit_body)["key"]
    nothing = restock(SeedPlan(users=3, products=2, orders=0, seed=7), [1, 2, 3], [10, 20],
                      prices)
    assert (nothing.stock, nothing.credit) == ([], [])


def test_more_buyers_than_a_batch_are_topped_up_in_calls_of_a_batch_each() -> None:
    """A call of the services takes at most MAX_BATCH items: 25,000 buyers are topped up
    in three calls (one key: it counts per user), every buyer exactly once."""
    from msshop.instruments.seed import make_orders, restock

    users = list(range(1, 25_001))
    plan = SeedPlan(users=len(users), products=1, orders=200_000, seed=7)
    given = restock(plan, users, [1], {1: 100})
    bodies = [json.loads(body) for body in given.credit]
    assert [len(body["users"]) <= MAX_BATCH for body in bodies] == [True] * len(bodies)
    assert len(bodies) == 3
    paid = [each["id"] for body in bodies for each in body["users"]]
    buyers = {order["user_id"] for order in make_orders(plan, users, [1])}
    assert sorted(paid) == sorted(buyers)
    assert len({body["key"] for body in bodies}) == 1
    assert len(given.stock) == 1
