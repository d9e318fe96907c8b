"""Issue 26: every read shows each order's status — confirmed, pending (a saga's, until its
outcome) or rejected with the reason — by each read strategy; the replicated read model
applies an order's outcome by version whatever the order it arrives in; `compare` tells an
order in flight from a wrong one; `verify` checks the invariant by status. Real sandboxes:
real service processes, their real SQLite files, the real bus (both backends where the
bus is what is tested)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from msshop.contracts import events
from msshop.contracts.answers import OrderLine, UserOrders
from msshop.contracts.shop import Order, OrderStatus
from msshop.contracts.strategies import ReadStrategy
from msshop.instruments import invariant
from msshop.instruments.asking import databases
from msshop.instruments.checking import caught_up
from msshop.instruments.client import Refused, ShopClient
from tests.conftest import Sandbox
from tests.e2e.test_reference_service_d import IMPLEMENTATIONS, Implementation, reference
from tests.unit.test_protocol import made_by_the_saga

T = TypeVar("T")


def until(found: Callable[[], T | None], what: str, timeout: float = 15) -> T:
    """Poll until `found` gives something (not None), within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = found()
        if value is not None:
            return value
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def shop(client: ShopClient, tag: str, credit: float = 1000.0, stock: int = 100,
         price: float = 5.0) -> tuple[int, int]:
    """A user with `credit`, a product with `stock` at `price`: (user id, product id)."""
    user = client.request("users", "POST", "/users", {
        "email": f"{tag}@example.com", "name": f"Buyer {tag}", "credit": credit})
    product = client.request("products", "POST", "/products", {
        "title": f"Thing {tag}", "price": price, "stock": stock})
    return int(user["id"]), int(product["id"])


def replicated(client: ShopClient, user_id: int) -> UserOrders:
    answer = client.user_orders(user_id, ReadStrategy.REPLICATED, kept=False)
    assert not isinstance(answer, Refused), answer
    return answer


def line_of(answer: UserOrders, order_id: int) -> OrderLine | None:
    return next((o for o in answer["orders"] if o["order_id"] == order_id), None)


def append_as(client: ShopClient, service: str, *appended: events.Event) -> None:
    """Events on the bus as `service` records them (its own credential), in this order."""
    async def append() -> None:
        bus = client.bus(as_service=service)
        try:
            await bus.append([events.encode(event) for event in appended])
        finally:
            await bus.close()

    asyncio.run(append())


def outcome(order_id: int, user_id: int, product_id: int, status: OrderStatus,
            reason: str | None = None) -> events.Event:
    return events.order_ended(order_id, user_id, product_id, 2, 500, f"purchase-{order_id}",
                              status, reason)


def placed_pending(order_id: int, user_id: int, product_id: int) -> events.Event:
    return events.order_placed(order_id, user_id, product_id, 2, 0, time.time(),
                               purchase=f"purchase-{order_id}", status=OrderStatus.PENDING)


# --- the replicated read model, from the bus ----------------------------------------------

def test_replicated_applies_an_orders_outcome_by_version_whatever_comes_first(
        any_sandbox: Sandbox) -> None:
    """As orders records them (its credential, on either bus): an OrderRejected before its
    OrderPlaced (the late v1 changes nothing), an OrderConfirmed after it, a saga's steps
    among them (skipped, never dead-lettered). The answer says each status and reason."""
    sandbox = any_sandbox
    client = sandbox.client()
    user, product = shop(client, "versions")
    caught_up(client, timeout=10)
    rejected, confirmed = 910_001, 910_002
    step = events.saga_step(events.STOCK_REFUSED, events.StockRefusedData(
        rejected, f"purchase-{rejected}", "out of stock: 0 left, 2 asked", 409))
    append_as(client, "orders",
              outcome(rejected, user, product, OrderStatus.REJECTED, "out of stock: 0 left"),
              placed_pending(rejected, user, product), placed_pending(confirmed, user, product))
    append_as(client, "products", step)
    append_as(client, "orders", outcome(confirmed, user, product, OrderStatus.CONFIRMED))
    caught_up(client, timeout=10)
    answer = replicated(client, user)
    assert [(o["order_id"], o["status"], o["reason"], o["unit_price"], o["total"])
            for o in answer["orders"]] == [
        (rejected, "rejected", "out of stock: 0 left", 5.0, 10.0),
        (confirmed, "confirmed", None, 5.0, 10.0)]
    assert client.dead_letters(10)["count"] == 0, "the steps are known, not poison"


def test_the_answer_shows_the_status_in_80_columns_and_json_carries_it(
        sandbox: Sandbox) -> None:
    client = sandbox.client()
    user, product = shop(client, "shown")
    append_as(client, "orders", placed_pending(920_001, user, product),
              placed_pending(920_002, user, product),
              outcome(920_002, user, product, OrderStatus.REJECTED,
                      "not enough credit: user has 1.00 of credit, not 10.00, for this "
                      "purchase of two things that cost more than they have"))
    caught_up(client, timeout=10)
    said = sandbox.run("query", "--user", str(user), "--view", "tree",
                       env_extra={"COLUMNS": "80"}, check=True)
    lines = said.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    rows = {line.split()[0]: line.split() for line in lines if line[:8].strip().isdigit()}
    assert rows["920001"][-1] == "pending" and rows["920002"][-1] == "rejected", lines
    reason = next(line for line in lines if line.startswith("order 920002 rejected: "))
    assert reason.startswith("order 920002 rejected: not enough credit: user has 1.00")
    assert reason.endswith("…") and len(reason) == 80, "cut to the terminal, one line"
    document = json.loads(sandbox.run("query", "--user", str(user), "--json",
                                      check=True).stdout)
    assert [(o["status"], o["reason"] is not None)
            for o in document["answer"]["orders"]] == [("pending", False), ("rejected", True)]


# --- compare ------------------------------------------------------------------------------

def compared(sandbox: Sandbox, user: int) -> dict[str, dict[str, Any]]:
    said = sandbox.run("compare", "--user", str(user), "--json")
    assert said.returncode == 0, said.stderr
    return {row["strategy"]: row for row in json.loads(said.stdout)["strategies"]}


def test_compare_says_a_status_that_differs_from_orders(sandbox: Sandbox) -> None:
    """A direct-call purchase is confirmed in orders; an OrderRejected for it (as orders
    sends it: only the read model sees it) makes the read model say rejected: compare
    says it differs, naming the status, while direct-call still equals the monolith."""
    client = sandbox.client()
    user, product = shop(client, "differs")
    order, _ = client.buy(user, product, 2)
    caught_up(client, timeout=10)
    assert all(row["equal"] for name, row in compared(sandbox, user).items()
               if name != "monolith")
    append_as(client, "orders", outcome(order["id"], user, product, OrderStatus.REJECTED,
                                        "invented"))
    caught_up(client, timeout=10)
    rows = compared(sandbox, user)
    assert rows["direct-call (batched)"]["equal"] is True
    row = rows["replicated"]
    assert row["equal"] is False and row["in_flight"] == []
    assert f"order {order['id']} status is 'rejected', expected 'confirmed'" in \
        row["differences"]
    text = sandbox.run("compare", "--user", str(user)).stdout
    assert f"replicated: order {order['id']} status is 'rejected'" in text


def stored_orders(sandbox: Sandbox, sql: str, *args: Any) -> None:
    """A write to orders' own file, with orders stopped: the data someone broke."""
    sandbox.run("stop", "orders", check=True)
    path = sandbox.root / "data" / "orders" / "orders.db"
    with sqlite3.connect(path) as conn:
        conn.execute(sql, args)
    conn.close()
    sandbox.run("start", "orders", check=True)


def test_verify_names_a_rejected_order_that_still_holds_its_takes(sandbox: Sandbox) -> None:
    """A confirmed order made rejected in orders' file (its takes untouched): verify names
    it for the stock and for the credit, with the numbers, and the balances, which count
    what it still holds, are not blamed twice."""
    client = sandbox.client()
    user, product = shop(client, "held", price=2.5)
    order, _ = client.buy(user, product, 3)
    caught_up(client, timeout=10)
    assert sandbox.run("verify").returncode == 0
    stored_orders(sandbox, "UPDATE orders SET status = 'rejected', reason = 'tampered' "
                           "WHERE id = ?", order["id"])
    said = sandbox.run("verify", "--json")
    assert said.returncode == 1, said.stderr
    key = order["request_id"]
    assert json.loads(said.stdout)["invariant"] == [
        f"order {order['id']} (purchase {key}): rejected (tampered), but product {product}'s "
        "stock (3) is still taken for it, never given back",
        f"order {order['id']} (purchase {key}): rejected (tampered), but user {user}'s "
        "credit (7.50) is still taken for it, never given back"]


# --- the reference Service Ds -------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_the_reference_programs_show_the_status_and_skip_the_steps(
        sandbox: Sandbox, tmp_path: Path, impl: Implementation) -> None:
    """Each reference Service D, run beside a sandbox: a saga's events (an outcome before
    its OrderPlaced, the steps between) give the statuses the monolith has nothing of but
    the read model must show, and nothing is dead-lettered."""
    client = sandbox.client()
    user, product = shop(client, f"reference-{impl.name}")
    order, _ = client.buy(user, product, 1)  # direct-call: confirmed in orders
    rejected, confirmed = 930_001, 930_002
    append_as(client, "orders",
              outcome(rejected, user, product, OrderStatus.REJECTED, "out of stock"),
              placed_pending(rejected, user, product), placed_pending(confirmed, user, product))
    append_as(client, "products", *[e for e in made_by_the_saga()
                                     if events.OWNERS[e.type] == "products"])
    append_as(client, "users", *[e for e in made_by_the_saga()
                                 if events.OWNERS[e.type] == "users"])
    with reference(sandbox, tmp_path / impl.name, impl.command) as program:
        assert program.caught_up()["dead_letters"] == 0
        status, answer = program.get(f"/user-orders/{user}?strategy=replicated")
        assert status == 200, answer
        assert [(o["order_id"], o["status"], o["reason"]) for o in answer["orders"]] == [
            (order["id"], "confirmed", None), (rejected, "rejected", "out of stock"),
            (confirmed, "pending", None)]
        append_as(client, "orders", outcome(confirmed, user, product, OrderStatus.CONFIRMED))
        program.caught_up()
        status, answer = program.get(f"/user-orders/{user}?strategy=replicated")
        assert line_of(answer, confirmed) == {
            "order_id": confirmed, "product_id": product, "title": f"Thing reference-"
            f"{impl.name}", "quantity": 2, "unit_price": 5.0, "total": 10.0,
            "status": "confirmed", "reason": None}
        status, direct = program.get(f"/user-orders/{user}?strategy=direct-call")
        assert status == 200 and direct["orders"] == replicated(client, user)["orders"][:1]


# --- with the saga (S's write path) -------------------------------------------------------

WAIT_MS = 10_000  # the longest an outcome is waited for (a busy machine: far above the ms)


def ended(client: ShopClient, order_id: int) -> Order:
    order = client.order(order_id, wait_ms=WAIT_MS)
    assert order["status"] != "pending", order
    return order


def taken(sandbox: Sandbox, purchase: str) -> tuple[int, bool] | None:
    """The stock products took for a purchase, and whether it was given back (None: no
    take), from products' own file."""
    path = sandbox.root / "data" / "products" / "products.db"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        row = conn.execute("SELECT amount, given_back_at IS NOT NULL FROM stock_takes "
                           "WHERE purchase = ?", (purchase,)).fetchone()
    return None if row is None else (int(row[0]), bool(row[1]))


def statuses_by(sandbox: Sandbox, user: int, strategy: str, *flags: str
                ) -> list[tuple[int, str, str | None]]:
    said = sandbox.run("query", "--user", str(user), "--strategy", strategy, "--json", *flags)
    assert said.returncode == 0, said.stderr
    orders = json.loads(said.stdout)["answer"]["orders"]
    return [(o["order_id"], o["status"], o["reason"]) for o in orders]


def test_each_read_strategy_shows_confirmed_pending_and_rejected(sandbox: Sandbox) -> None:
    """Saga purchases: one confirmed, one rejected (out of stock), one pending (users
    stopped: its stock is taken, its credit step waits). The monolith's join, direct-call
    (partial: users is down) and the read model show the same three statuses and the
    reason; the invariant counts the pending order's stock as reserved, and names only
    that it is pending. Once users is back the saga ends; a compensated purchase (credit
    refused after the stock was taken) ends rejected; verify is clean."""
    client = sandbox.client()
    user, product = shop(client, "three", stock=3)
    poor, _ = shop(client, "poor", credit=1.0)
    confirmed = ended(client, client.buy(user, product, 1, write="saga")[0]["id"])
    rejected = ended(client, client.buy(user, product, 10, write="saga")[0]["id"])
    assert (confirmed["status"], rejected["status"]) == ("confirmed", "rejected")
    assert rejected["reason"] and "stock" in rejected["reason"], rejected
    sandbox.run("stop", "users", check=True)
    pending, _ = client.buy(user, product, 1, request_id="held-by-users", write="saga")
    until(lambda: taken(sandbox, "held-by-users"), "products takes its stock")
    until(lambda: line_of(replicated(client, user), pending["id"]), "the read model has it")
    want = [(confirmed["id"], "confirmed", None), (rejected["id"], "rejected",
                                                   rejected["reason"]),
            (pending["id"], "pending", None)]
    assert statuses_by(sandbox, user, "monolith") == want
    assert statuses_by(sandbox, user, "direct-call", "--partial") == want
    assert statuses_by(sandbox, user, "replicated") == want
    assert invariant.breaches(databases(sandbox.state), now=pending["created_at"] + 5) == [
        f"order {pending['id']} (purchase held-by-users): still pending 5.0 s after it was "
        "placed, with every service caught up (its saga is stuck)"], \
        "its stock is reserved, not a balance that is wrong"
    sandbox.run("start", "users", check=True)
    assert ended(client, pending["id"])["status"] == "confirmed"
    compensated = ended(client, client.buy(poor, product, 1, write="saga")[0]["id"])
    assert compensated["status"] == "rejected" and "credit" in str(compensated["reason"])
    assert taken(sandbox, str(compensated["request_id"])) == (1, True), \
        "the stock was taken, then given back (the compensation)"
    said = sandbox.run("verify")
    assert said.returncode == 0, said.stdout + said.stderr
    assert "no rejected order holds anything, and none is pending" in " ".join(
        said.stdout.split())


def test_compare_says_the_read_model_is_behind_not_wrong(sandbox: Sandbox) -> None:
    """The read model held off the bus (a partition on its link) while a saga's order ends:
    it still says pending where orders says confirmed. compare calls it behind, naming the
    order, not a difference; once the link heals, equal."""
    client = sandbox.client()
    user, product = shop(client, "behind")
    sandbox.run("stop", "users", check=True)
    order, _ = client.buy(user, product, 2, write="saga")
    until(lambda: line_of(replicated(client, user), order["id"]), "the read model has it")
    sandbox.run("chaos", "query", "--to", "bus", "--error-rate", "1", check=True)
    sandbox.run("start", "users", check=True)
    assert ended(client, order["id"])["status"] == "confirmed"
    row = compared(sandbox, user)["replicated"]
    assert (row["equal"], row["differences"]) == (False, []), row
    assert row["in_flight"] == [f"order {order['id']} is pending here, confirmed in orders: "
                                "its outcome is not applied here yet"]
    text = sandbox.run("compare", "--user", str(user)).stdout
    assert "behind" in text and "differs" not in text, text
    sandbox.run("chaos", "query", "--to", "bus", "--clear", check=True)
    caught_up(client, timeout=10)
    assert all(row["equal"] for name, row in compared(sandbox, user).items()
               if name != "monolith")


def test_verify_names_an_order_pending_once_everything_has_caught_up(sandbox: Sandbox
                                                                      ) -> None:
    """A pending order whose saga never started (its row put in orders' file with no
    event: as if its OrderPlaced were lost): every service caught up, verify names it and
    how long it has been pending."""
    client = sandbox.client()
    user, product = shop(client, "stuck")
    client.buy(user, product, 1)
    caught_up(client, timeout=10)
    stored_orders(sandbox, "INSERT INTO orders (id, user_id, product_id, quantity, "
                           "unit_price_cents, request_id, created_at, status) VALUES "
                           "(777, ?, ?, 1, 0, 'stuck-1', ?, 'pending')", user, product,
                  time.time() - 42)
    said = sandbox.run("verify", "--json")
    assert said.returncode == 1, said.stderr
    (line,) = json.loads(said.stdout)["invariant"]
    assert line.startswith("order 777 (purchase stuck-1): still pending 4"), line
    assert line.endswith(" s after it was placed, with every service caught up (its saga "
                         "is stuck)")


def test_caught_up_waits_for_the_sagas_steps(sandbox: Sandbox) -> None:
    """users' steps held off the bus (a fault on its link) while a saga's order waits for
    its credit: the read model is at the head, but the shop is not caught up (users' steps
    are behind, or the CreditTaken a read in flight let them make cannot be published),
    so verify never calls that order stuck; once the link heals, the order ends and
    verify is clean."""
    client = sandbox.client()
    user, product = shop(client, "waits")
    caught_up(client, timeout=10)
    sandbox.run("chaos", "users", "--to", "bus", "--error-rate", "1", check=True)
    order, _ = client.buy(user, product, 1, write="saga")
    until(lambda: taken(sandbox, str(order["request_id"])), "products takes its stock")
    said = sandbox.run("wait", "--for", "caught-up", "--timeout", "1", "--json")
    assert said.returncode == 3, said.stderr
    report = json.loads(said.stdout)
    # users is what is missing: its steps behind the head, or (if its long-poll in flight
    # as the link was cut handed it the StockTaken) the CreditTaken it could not publish
    assert any((m.startswith("users: its saga steps ") and m.endswith(" behind"))
               or (m.startswith("users: ") and m.endswith("not on the bus yet"))
               for m in report["missing"]), report["missing"]
    assert client.order(order["id"])["status"] == "pending"
    sandbox.run("chaos", "users", "--to", "bus", "--clear", check=True)
    assert ended(client, order["id"])["status"] == "confirmed"
    said = sandbox.run("verify")
    assert said.returncode == 0, said.stdout + said.stderr
