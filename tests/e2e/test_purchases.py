"""Issue 26: a purchase takes stock and credit, all or nothing, by each write strategy —
with real service processes and their real SQLite files; `verify`'s invariant checked from
those files (instruments/invariant.py)."""

from __future__ import annotations

import json
import resource
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from msshop.contracts.credentials import bearer
from msshop.contracts.errors import MsshopError
from msshop.contracts.limits import MAX_BATCH
from msshop.contracts.strategies import ReadStrategy, WriteStrategy
from msshop.instruments import invariant, purchase
from msshop.instruments.asking import databases
from msshop.instruments.checking import caught_up
from msshop.instruments.client import ShopClient
from msshop.runtime.platform.db import open_database
from msshop.runtime.services import users as users_service
from tests.conftest import Sandbox, running_sandbox

BUYERS = 50
LEFT = 10


def shop(client: ShopClient, buyers: int, stock: int, price: float = 5.0,
         credit: float = 1000.0, tag: str = "t") -> tuple[list[int], int]:
    """`buyers` users with `credit` each, one product with `stock` left at `price`."""
    users = client.add_batch("users", [{"email": f"{tag}{n}@example.com", "name": f"B {n}",
                                        "credit": credit} for n in range(buyers)])["ids"]
    product = client.request("products", "POST", "/products",
                             {"title": f"Last {tag}", "price": price, "stock": stock})
    return users, int(product["id"])


def read(sandbox: Sandbox, service: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    path = sandbox.root / "data" / service / f"{service}.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return conn.execute(sql, args).fetchall()


def stock_of(sandbox: Sandbox, product: int) -> int:
    return int(read(sandbox, "products", "SELECT stock FROM products WHERE id = ?",
                    product)[0][0])


def breaches(sandbox: Sandbox) -> list[str]:
    return invariant.breaches(databases(sandbox.state))


def at_once(strategy: WriteStrategy) -> int:
    """Buyers at once: all of them, but a monolith's buyer in this process holds the three
    files, their WAL and shared memory open (9 descriptors): fewer under a low fd limit."""
    if strategy is not WriteStrategy.MONOLITH:
        return BUYERS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(4, min(BUYERS, (soft - 100) // 9))


# the sagas' own (their rejected orders are recorded, as rejected): tests/e2e/test_saga.py
@pytest.mark.parametrize("strategy", [s for s in WriteStrategy if not s.saga])
def test_the_last_items_go_to_exactly_as_many_buyers(sandbox: Sandbox,
                                                     strategy: WriteStrategy) -> None:
    """50 buyers at once of a product with 10 left: exactly 10 confirmed, 40 rejected
    (out of stock), the stock at 0, never below, and the invariant kept."""
    users, product = shop(sandbox.client(), BUYERS, LEFT)
    state = sandbox.state

    def buy(user: int) -> purchase.Bought:
        return purchase.buy(state, strategy, user, product, 1)

    with ThreadPoolExecutor(at_once(strategy)) as pool:
        bought = list(pool.map(buy, users))
    confirmed = [b for b in bought if b.outcome == "confirmed"]
    rejected = [b for b in bought if b.outcome == "rejected"]
    assert (len(confirmed), len(rejected)) == (LEFT, BUYERS - LEFT)
    assert all((b.reason or "").startswith(f"out of stock: product {product} has 0, 1 asked")
               for b in rejected), {b.reason for b in rejected}
    assert stock_of(sandbox, product) == 0
    assert read(sandbox, "orders", "SELECT count(*) FROM orders WHERE product_id = ?",
                product) == [(LEFT,)]
    assert breaches(sandbox) == []


def test_credit_running_out_gives_the_stock_back(sandbox: Sandbox) -> None:
    """Products takes the stock, users refuses the credit: the stock goes back (direct-call's
    compensation), no order is recorded, and the invariant holds."""
    client = sandbox.client()
    (user,), product = shop(client, 1, 5, price=10.0, credit=15.0)
    status, answer = client.exchange("orders", "POST", "/orders", {
        "user_id": user, "product_id": product, "quantity": 2, "request_id": "too-dear"})
    assert (status, answer["error"]) == (
        409, f"not enough credit: user {user} has 15.00, 20.00 asked")
    assert stock_of(sandbox, product) == 5
    assert read(sandbox, "products", "SELECT amount, given_back_at IS NOT NULL FROM "
                "stock_takes WHERE purchase = 'too-dear'") == [(2, 1)]
    assert read(sandbox, "orders", "SELECT count(*) FROM orders") == [(0,)]
    assert breaches(sandbox) == []
    # the same purchase again is refused as given back: its key took once, and went back
    status, again = client.exchange("orders", "POST", "/orders", {
        "user_id": user, "product_id": product, "quantity": 2, "request_id": "too-dear"})
    assert (status, again["error"]) == (409, "purchase too-dear was refused and given back "
                                             "before; buy again with a new request_id")
    order, created = client.buy(user, product, 1)
    assert created and order["total"] == 10.0
    assert client.request("users", "GET", f"/users/{user}")["credit"] == 5.0
    assert stock_of(sandbox, product) == 4
    assert breaches(sandbox) == []


def test_refusals_name_the_problem_and_leave_nothing_taken(sandbox: Sandbox) -> None:
    client = sandbox.client()
    (user,), product = shop(client, 1, 3)
    cases = [
        ({"user_id": user, "product_id": product, "quantity": 4}, 409,
         f"out of stock: product {product} has 3, 4 asked"),
        ({"user_id": 999, "product_id": product}, 422, "user_id 999: no such user"),
        ({"user_id": user, "product_id": 999}, 422, "product_id 999: no such product"),
        ({"user_id": user, "product_id": product, "quantity": 0}, 422, None),
    ]
    for body, status, message in cases:
        got, answer = client.exchange("orders", "POST", "/orders", body)
        assert got == status, body
        assert answer["service"] == "orders"
        if message is not None:
            assert answer["error"] == message
    assert stock_of(sandbox, product) == 3
    assert read(sandbox, "orders", "SELECT count(*) FROM orders") == [(0,)]
    # a batch is all or nothing: one purchase over the stock refuses it whole
    status, answer = client.exchange("orders", "POST", "/orders/batch", {"orders": [
        {"user_id": user, "product_id": product, "quantity": 2},
        {"user_id": user, "product_id": product, "quantity": 2}]})
    assert (status, answer["error"]) == (
        409, f"out of stock: product {product} has 1, 2 asked; nothing was recorded")
    assert stock_of(sandbox, product) == 3
    assert breaches(sandbox) == []
    # the CLI says rejected, exit 1, with the reason; --json carries it
    said = sandbox.run("buy", "--user", str(user), "--product", str(product),
                       "--quantity", "4", "--json")
    assert said.returncode == 1
    assert json.loads(said.stdout) == {
        "outcome": "rejected", "strategy": "direct-call", "order": None, "created": False,
        "reason": f"out of stock: product {product} has 3, 4 asked"}
    said = sandbox.run("buy", "--user", str(user), "--product", str(product), "--write",
                       "monolith")
    assert said.returncode == 0, said.stderr
    assert f"bought 1 x product {product}" in said.stdout
    # the saga (tests/e2e/test_saga.py) records its order pending and ends it: here, once
    # products and users have said, confirmed
    said = sandbox.run("buy", "--user", str(user), "--product", str(product), "--write",
                       "saga", "--wait")
    assert said.returncode == 0, said.stderr
    assert "Traceback" not in said.stderr


def test_a_repeated_request_id_is_one_order_and_one_take(sandbox: Sandbox) -> None:
    client = sandbox.client()
    (user,), product = shop(client, 1, 10, price=2.0)
    body = {"user_id": user, "product_id": product, "quantity": 3, "request_id": "once"}
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: ShopClient(sandbox.state).exchange(
            "orders", "POST", "/orders", body), range(10)))
    assert {status for status, _ in answers} <= {200, 201}
    assert len({answer["id"] for _, answer in answers}) == 1
    assert client.buy(user, product, 3, request_id="once")[1] is False
    assert stock_of(sandbox, product) == 7
    assert read(sandbox, "products", "SELECT count(*) FROM stock_takes") == [(1,)]
    assert read(sandbox, "users", "SELECT count(*), sum(amount) FROM credit_takes") == [
        (1, 600)]
    assert breaches(sandbox) == []


def test_the_monolith_purchase_reaches_the_read_model(sandbox: Sandbox) -> None:
    """Written from the CLI into orders' outbox, in the one transaction: the orders relay
    (another process) publishes it and the query service applies it."""
    client = sandbox.client()
    (user,), product = shop(client, 1, 2, price=3.5)
    bought = purchase.buy(sandbox.state, WriteStrategy.MONOLITH, user, product, 2)
    assert bought.outcome == "confirmed" and bought.order is not None
    caught_up(client, timeout=10)
    answer = client.user_orders(user, ReadStrategy.REPLICATED, kept=False)
    assert not hasattr(answer, "status"), answer
    assert [o["order_id"] for o in answer["orders"]] == [bought.order["id"]]
    assert stock_of(sandbox, product) == 0
    assert client.request("users", "GET", f"/users/{user}")["credit"] == 993.0
    assert sandbox.run("verify").returncode == 0


def test_a_crash_between_the_steps_leaks_the_stock_and_verify_names_it(
        sandbox: Sandbox) -> None:
    """direct-call's cost, shown: the credit take slowed, orders SIGKILLed after products
    took the stock: the stock stays taken for an order that does not exist, and verify
    names it with the numbers. The same purchase sent again (its request_id) records it
    once and takes nothing twice: verify is clean."""
    client = sandbox.client()
    (user,), product = shop(client, 1, 5)
    sandbox.run("chaos", "orders", "--to", "users", "--latency", "1500", check=True)
    with ThreadPoolExecutor(1) as pool:
        attempt = pool.submit(lambda: ShopClient(sandbox.state).exchange(
            "orders", "POST", "/orders", {"user_id": user, "product_id": product,
                                          "quantity": 3, "request_id": "crash-1"}))
        deadline = time.monotonic() + 10
        while not read(sandbox, "products", "SELECT 1 FROM stock_takes"):
            assert time.monotonic() < deadline, "products never took the stock"
            time.sleep(0.01)
        sandbox.run("kill", "orders", check=True)
        with pytest.raises(MsshopError):  # the connection dies with orders
            attempt.result(timeout=10)
    sandbox.run("start", "orders", check=True)  # verify waits for the read model first
    said = sandbox.run("verify", "--json")
    assert said.returncode == 1, said.stderr
    assert json.loads(said.stdout)["invariant"] == [
        f"product {product}: 3 taken for purchase crash-1 with no order — taken, never "
        "recorded nor given back (direct-call: orders stopped between the steps)"]
    assert stock_of(sandbox, product) == 2
    sandbox.run("chaos", "orders", "--clear", check=True)
    _, created = client.buy(user, product, 3, request_id="crash-1")
    assert created
    assert stock_of(sandbox, product) == 2
    assert breaches(sandbox) == []


def test_seeding_gives_what_its_orders_take(sandbox: Sandbox) -> None:
    """Stock and credit for exactly what the seed's orders take, given once; more buyers
    than one call may top up (MAX_BATCH) are topped up in two."""
    args = ("seed", "--users", "11000", "--products", "5", "--orders", "40000")
    sandbox.run(*args, check=True)
    assert read(sandbox, "orders", "SELECT count(*) FROM orders") == [(40000,)]
    (buyers,), = read(sandbox, "orders", "SELECT count(DISTINCT user_id) FROM orders")
    assert buyers > MAX_BATCH
    assert read(sandbox, "users", "SELECT count(DISTINCT holder_id) FROM credit_given WHERE "
                "key IS NOT NULL") == [(buyers,)]
    assert breaches(sandbox) == []
    given = [read(sandbox, service, f"SELECT count(*), sum(amount) FROM {book}_given")
             for service, book in (("products", "stock"), ("users", "credit"))]
    sandbox.run(*args, check=True)  # again: nothing new, nothing given twice
    assert [read(sandbox, service, f"SELECT count(*), sum(amount) FROM {book}_given")
            for service, book in (("products", "stock"), ("users", "credit"))] == given
    assert breaches(sandbox) == []


def test_users_signed_up_before_credit_existed_get_the_default(tmp_path: Path) -> None:
    """An existing users.db is migrated at open: every user gets the sign-up default, and
    the ledger says it was given."""
    root = tmp_path / "sandbox"
    old = open_database(root / "data" / "users" / "users.db", users_service.MIGRATIONS[:3])
    with old:
        old.execute("INSERT INTO users (email, name, created_at) VALUES ('old@x.io', 'O', 1)")
    old.close()
    with running_sandbox(root) as sandbox:
        user = sandbox.client().request("users", "GET", "/users/1")
        assert user["credit"] == users_service.DEFAULT_CREDIT
        assert read(sandbox, "users", "SELECT holder_id, amount FROM credit_given") == [
            (1, round(users_service.DEFAULT_CREDIT * 100))]


def test_a_give_back_that_cannot_be_made_is_retried_until_it_is(sandbox: Sandbox) -> None:
    """users stopped: products took the stock, users cannot be asked, so the stock goes
    back and the 503 names users; users was never reached, so nothing is owed it. users too
    slow instead (orders gives up after its timeout): it may have taken, so the give-back
    owed to it waits, shown in orders' /health as a failing task, and is made once users
    answers in time: nothing stays taken."""
    client = sandbox.client()
    (user,), product = shop(client, 1, 5)
    sandbox.run("stop", "users", check=True)
    status, answer = client.exchange("orders", "POST", "/orders", {
        "user_id": user, "product_id": product, "request_id": "users-down"})
    assert (status, answer["dependency"]) == (503, "users"), answer
    assert stock_of(sandbox, product) == 5
    assert client.health("orders").get("owed_give_backs") == 0, "users was never reached"
    sandbox.run("start", "users", check=True)

    sandbox.run("chaos", "users", "--latency", "2500", check=True)  # orders waits 2 s
    status, answer = client.exchange("orders", "POST", "/orders", {
        "user_id": user, "product_id": product, "request_id": "users-slow"})
    assert (status, answer["dependency"]) == (503, "users"), answer
    assert stock_of(sandbox, product) == 5
    assert client.health("orders").get("owed_give_backs") == 1
    deadline = time.monotonic() + 20
    while (task := next(t for t in client.health("orders").get("tasks", [])
                        if t["name"] == "give-back"))["state"] != "failing":
        assert time.monotonic() < deadline, task  # its first try in the background fails
        time.sleep(0.05)
    assert "did not answer" in (task["error"] or ""), task
    sandbox.run("chaos", "users", "--clear", check=True)
    deadline = time.monotonic() + 20
    while client.health("orders").get("owed_give_backs"):
        assert time.monotonic() < deadline, "the give-back was never made"
        time.sleep(0.05)
    assert read(sandbox, "users", "SELECT purchase FROM credit_takes "
                "WHERE given_back_at IS NOT NULL") == [("users-slow",)]
    assert read(sandbox, "users", "SELECT count(*) FROM credit_takes "
                "WHERE given_back_at IS NULL") == [(0,)]
    assert breaches(sandbox) == []


def test_restocks_and_top_ups_with_a_key_are_given_once(sandbox: Sandbox) -> None:
    client = sandbox.client()
    owner = bearer(sandbox.state.token)
    (user,), product = shop(client, 1, 0, credit=0.0)
    restock = {"key": "delivery-1", "products": [{"id": product, "quantity": 2},
                                                 {"id": product, "quantity": 3}]}
    assert client.request("products", "POST", "/products/stock", restock, owner) == {"given": 1}
    client.request("products", "POST", "/products/stock", restock, owner)  # again: nothing more
    top_up = {"key": "gift-1", "users": [{"id": user, "amount": 12.5}]}
    client.request("users", "POST", "/users/credit", top_up, owner)
    client.request("users", "POST", "/users/credit", top_up, owner)
    assert stock_of(sandbox, product) == 5
    assert client.request("users", "GET", f"/users/{user}")["credit"] == 12.5
    status, answer = client.exchange("products", "POST", "/products/stock", {
        "products": [{"id": product, "quantity": 1}, {"id": 999, "quantity": 1}]}, owner)
    assert (status, answer["error"]) == (422, "product_id 999: no such product; nothing "
                                              "was restocked")
    status, answer = client.exchange("users", "POST", "/users/credit", {
        "users": [{"id": user, "amount": 0.001}]}, owner)
    assert status == 422 and "at most two decimal places" in answer["error"]
    assert stock_of(sandbox, product) == 5
    assert breaches(sandbox) == []


def test_signup_sets_the_credit_to_start_with(sandbox: Sandbox) -> None:
    given = sandbox.run("signup", "--email", "grace@example.com", "--name", "Grace",
                        "--credit", "50", "--json", check=True)
    user = json.loads(given.stdout)["user"]
    assert user["credit"] == 50.0
    default = sandbox.run("signup", "--email", "ada@example.com", "--name", "Ada", "--json",
                          check=True)
    assert json.loads(default.stdout)["user"]["credit"] == users_service.DEFAULT_CREDIT
    refused = sandbox.run("signup", "--email", "alan@example.com", "--name", "Alan",
                          "--credit", "0.001")
    assert refused.returncode == 1 and refused.stdout == ""
    (line,) = refused.stderr.strip().splitlines()
    assert "at most two decimal places" in line, line
