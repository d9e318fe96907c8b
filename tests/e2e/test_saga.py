"""Issue 26, the choreographed saga: orders records the order pending, products and users
take stock and credit as consumers of the bus (each in its own process and file, each
step applied once), a credit refusal gives the stock back, and orders ends the order
confirmed or rejected with the reason. Real service processes, real SQLite files, on the
sandbox's log and on NATS JetStream; the invariant checked from the files
(instruments/invariant.py)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from msshop.contracts.strategies import WriteStrategy
from msshop.instruments import purchase
from msshop.instruments.client import ShopClient
from tests.conftest import Sandbox
from tests.e2e.test_purchases import breaches, read, shop, stock_of

SAGA = WriteStrategy.SAGA
WAIT = 20.0  # seconds a test waits for an outcome (a busy machine: far above the usual ms)


def credit_of(sandbox: Sandbox, user: int) -> float:
    return float(sandbox.client().request("users", "GET", f"/users/{user}")["credit"])


def outcomes(sandbox: Sandbox, product: int) -> dict[str, int]:
    return dict(read(sandbox, "orders", "SELECT status, count(*) FROM orders WHERE "
                     "product_id = ? GROUP BY status", product))


def settled(sandbox: Sandbox, timeout: float = WAIT) -> None:
    """Every order confirmed or rejected (none pending), every outbox sent."""
    client = sandbox.client()
    deadline = time.monotonic() + timeout
    while True:
        pending = read(sandbox, "orders", "SELECT count(*) FROM orders WHERE status = "
                       "'pending'")[0][0]
        backlog = sum(client.health(s).get("outbox", {}).get("pending", 0)
                      for s in ("users", "products", "orders"))
        if not pending and not backlog:
            return
        assert time.monotonic() < deadline, f"{pending} order(s) still pending"
        time.sleep(0.05)


def test_a_saga_purchase_confirms(any_sandbox: Sandbox) -> None:
    """Pending at once (202, the semantic lock), confirmed once products and users have
    taken stock and credit; the price is products'; the CLI says so."""
    sandbox = any_sandbox
    client = sandbox.client()
    (user,), product = shop(client, 1, 5, price=4.25)
    order, created = client.buy(user, product, 2, request_id="saga-1", write=SAGA)
    assert created and order["status"] == "pending" and order["reason"] is None
    assert order["unit_price"] == 0  # the price is products' to say
    done = client.order(order["id"], wait_ms=10_000)
    assert (done["status"], done["unit_price"], done["total"]) == ("confirmed", 4.25, 8.5)
    assert stock_of(sandbox, product) == 3
    assert credit_of(sandbox, user) == 1000 - 8.5
    said = sandbox.run("buy", "--user", str(user), "--product", str(product), "--write",
                       "saga", "--wait")
    assert said.returncode == 0, said.stderr
    assert "confirmed (saga)" in said.stdout and "at 4.25 = 4.25" in said.stdout
    settled(sandbox)
    assert breaches(sandbox) == []
