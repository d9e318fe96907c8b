"""What each strategy does when things fail, with real processes: read-your-writes, a
consumer catching up, outages, kills. Nothing the client saw succeed may be lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

from msshop.bus.interface import Bus
from msshop.contracts import events
from msshop.instruments.checking import caught_up
from tests.conftest import Sandbox, one_purchase, running_sandbox


async def append_as(bus: Bus, body: bytes) -> None:
    try:
        await bus.append([body])
    finally:
        await bus.close()


def test_read_your_writes_with_after(any_sandbox: Sandbox) -> None:
    sandbox = any_sandbox
    client = sandbox.client()
    client.request("users", "POST", "/users", {"email": "r@example.com", "name": "R"})
    client.request("products", "POST", "/products", {"title": "Cap", "price": 9, "stock": 100})
    # relays of different services are not ordered: the user's and the product's events
    # must be on the bus before the order's, for `after` to stand for all three
    caught_up(client, timeout=30)
    order = client.request("orders", "POST", "/orders?wait_published_ms=2000",
                           {"user_id": 1, "product_id": 1})
    position = order["event"]["position"]
    assert order["event"]["type"] == "OrderPlaced" and position >= 3
    answer = client.request("query", "GET", f"/user-orders/1?after={position}")
    assert [o["order_id"] for o in answer["orders"]] == [order["id"]]
    assert answer["freshness"]["position"] >= position

    status, late = client.exchange("query", "GET", "/user-orders/1?after=999999&wait_ms=50")
    assert status == 503
    assert late["error"].startswith("the read model has not applied bus position 999999 "
                                    "within 50 ms (it is at ")
    result = sandbox.run("query", "--user", "1", "--after", str(position), check=True)
    assert f"read model at bus position {position:,}" in result.stdout
    wrong = sandbox.run("query", "--user", "1", "--after", "3", "--strategy", "direct-call")
    assert wrong.returncode == 2 and "use it with --strategy replicated" in wrong.stderr


def test_query_sigkilled_mid_catch_up_applies_nothing_twice_and_skips_nothing(
        any_sandbox: Sandbox) -> None:
    sandbox = any_sandbox
    sandbox.run("seed", "--users", "300", "--products", "40", "--orders", "20000",
                check=True)
    client = sandbox.client()
    caught_up(client, timeout=60)
    sandbox.run("stop", "query", check=True)
    (sandbox.root / "data" / "query" / "query.db").unlink()  # rebuild from position 0 on start
    for suffix in ("-wal", "-shm"):
        (sandbox.root / "data" / "query" / f"query.db{suffix}").unlink(missing_ok=True)
    sandbox.run("start", "query", check=True)
    # while it catches up it says so instead of answering from a half-built read model
    status, answer = sandbox.client().exchange("query", "GET", "/user-orders/1")
    assert status == 503 and answer["error"].startswith("not ready: catching up (position ")
    # kill it in the middle of the work: as soon as it has applied something
    while sandbox.client().request("query", "GET", "/health")["consumer"]["position"] == 0:
        time.sleep(0.001)
    pid = sandbox.state.services["query"].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with sqlite3.connect(sandbox.root / "data" / "query" / "query.db") as conn:
        (applied,) = conn.execute("SELECT coalesce(max(position), 0) FROM consumer_offsets"
                                  ).fetchone()
    assert 0 < applied < 20340, "killed part-way through the log"
    time.sleep(0.2)  # the supervisor notices the crash
    sandbox.run("start", "query", check=True)
    caught_up(sandbox.client(), timeout=60)
    with sqlite3.connect(sandbox.root / "data" / "query" / "query.db") as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM orders_replica"
                            ).fetchone() == (20000, 20000)
        assert conn.execute("SELECT count(*) FROM users_replica").fetchone() == (300,)
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
    assert sandbox.run("verify").returncode == 0


def test_bus_down_during_a_thousand_purchases_loses_nothing(any_sandbox: Sandbox) -> None:
    sandbox = any_sandbox
    client = sandbox.client()
    client.request("users", "POST", "/users/batch", {"users": [
        {"email": f"b{i}@example.com", "name": f"B {i}"} for i in range(20)]})
    client.request("products", "POST", "/products/batch", {"products": [
        {"sku": f"p{i}", "title": f"Thing {i}", "price": 1 + i, "stock": 1000}
        for i in range(10)]})
    caught_up(client, timeout=10)
    sandbox.run("kill", "bus", check=True)
    placed = [client.request("orders", "POST", "/orders", {
        "user_id": 1 + n % 20, "product_id": 1 + n % 10, "request_id": f"outage-{n}"})["id"]
        for n in range(1000)]
    backlog = client.request("orders", "GET", "/health")["outbox"]
    assert backlog["pending"] == 1000 and backlog["error"].startswith("bus is down")
    answer = client.request("query", "GET", "/user-orders/1")  # replicated keeps answering
    assert answer["orders"] == [] and answer["freshness"]["caught_up"] is False

    sandbox.run("start", "bus", check=True)
    caught_up(sandbox.client(), timeout=30)
    with sqlite3.connect(sandbox.root / "data" / "query" / "query.db") as conn:
        ids = [i for (i,) in conn.execute("SELECT id FROM orders_replica ORDER BY id")]
    assert ids == sorted(placed), "every order once, none missing"
    in_order = [e.aggregate_id for e in sandbox.bus_events() if e.type == "OrderPlaced"]
    assert in_order == placed, "published once each, in order"
    assert sandbox.run("verify").returncode == 0


def test_products_killed_direct_call_fails_naming_it_replicated_answers(sandbox: Sandbox
                                                                       ) -> None:
    one_purchase(sandbox, "Boot", 50)
    client = sandbox.client()
    sandbox.run("kill", "products", check=True)
    status, answer = client.exchange("query", "GET", "/user-orders/1?strategy=direct-call")
    assert status == 503 and answer["dependency"] == "products"
    assert answer["failure"] == "refused"
    replicated = client.request("query", "GET", "/user-orders/1?strategy=replicated")
    assert [o["title"] for o in replicated["orders"]] == ["Boot"]
    assert replicated["freshness"]["caught_up"] is True


def test_chaos_needs_the_token_and_shows_in_traces_status_and_timeouts(sandbox: Sandbox
                                                                       ) -> None:
    state_file = sandbox.root / "state.json"
    assert state_file.stat().st_mode & 0o777 == 0o600, "the token is readable by its owner only"
    client = sandbox.client()
    body = {"latency_ms": 100}
    status, answer = client.exchange("users", "POST", "/chaos", body)
    assert (status, answer["error"].split(":")[0]) == (401, "chaos needs the sandbox's token")
    status, answer = client.exchange("users", "POST", "/chaos", body,
                                     headers={"authorization": "Bearer not-the-token"})
    assert (status, answer["error"]) == (403, "chaos refused: that is not this sandbox's token")
    assert client.request("users", "GET", "/health")["chaos"] is None

    client.request("users", "POST", "/users", {"email": "c@example.com", "name": "C"})
    done = sandbox.run("chaos", "users", "--latency", "2500", check=True)
    assert done.stdout.startswith("users: every request delayed 2500 ms")
    status_text = sandbox.run("status", check=True).stdout
    assert "chaos in users: every request delayed 2500 ms" in status_text
    # slower than the services' http_timeout (2 s): direct-call names users and how it failed
    status, answer = client.exchange("query", "GET", "/user-orders/1?strategy=direct-call")
    assert (status, answer["dependency"], answer["failure"]) == (503, "users", "timeout")
    assert answer["error"] == "users did not answer within 2 s"
    sandbox.run("chaos", "users", "--clear", check=True)
    sandbox.run("chaos", "orders", "--error-rate", "1", check=True)
    status, answer = client.exchange("query", "GET", "/user-orders/1?strategy=direct-call")
    assert (status, answer["dependency"], answer["failure"]) == (503, "orders", "5xx")
    assert "chaos: orders failed on purpose" in answer["error"]
    sandbox.run("chaos", "orders", "--clear", check=True)
    assert client.request("query", "GET", "/user-orders/1?strategy=direct-call")["user"]["id"] \
        == 1
    bad = sandbox.run("chaos", "users")
    assert bad.returncode == 2 and "say what to inject" in bad.stderr


def test_partial_direct_call_marks_what_is_missing(sandbox: Sandbox) -> None:
    one_purchase(sandbox, "Scarf", 20)
    client = sandbox.client()
    sandbox.run("stop", "products", check=True)
    answer = client.request("query", "GET", "/user-orders/1?strategy=direct-call&partial=1")
    assert answer["partial"] is True
    assert [(m["service"], m["failure"], m["missing"]) for m in answer["missing"]] == [
        ("products", "refused", "the product titles")]
    assert [(o["order_id"], o["title"]) for o in answer["orders"]] == [(1, None)]
    shown = sandbox.run("query", "--user", "1", "--strategy", "direct-call", "--partial",
                        check=True).stdout
    assert "partial: the product titles missing, products failed (refused)" in shown
    sandbox.run("start", "products", check=True)
    whole = client.request("query", "GET", "/user-orders/1?strategy=direct-call&partial=1")
    assert whole["partial"] is False and whole["orders"][0]["title"] == "Scarf"


def test_deadletters_lists_what_could_not_be_applied(any_sandbox: Sandbox) -> None:
    sandbox = any_sandbox
    empty = sandbox.run("deadletters", check=True).stdout
    assert empty.startswith("no dead letters")
    client = sandbox.client()
    weird = events.make(events.USER_SIGNED_UP, "users", 8, 1, {"id": 8}, None)
    body = json.dumps(dict(json.loads(events.encode(weird)), type="UserVanished")).encode()
    asyncio.run(append_as(client.bus(as_service="users"), body))  # users' own credential
    deadline = time.monotonic() + 10
    while client.request("query", "GET", "/health")["consumer"]["dead_letters"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    listed = sandbox.run("deadletters", check=True).stdout.splitlines()
    assert listed[0] == "1 dead letter(s); newest first:"
    assert listed[1].split() == ["1", "UserVanished", "unknown", "event", "type",
                                 "'UserVanished'"]
    assert "1 dead letter(s)" in sandbox.run("status", check=True).stdout


def test_replay_rebuilds_the_read_model_from_the_log_while_running(any_sandbox: Sandbox
                                                                  ) -> None:
    sandbox = any_sandbox
    sandbox.run("seed", "--users", "50", "--products", "20", "--orders", "3000", check=True)
    client = sandbox.client()
    client.request("products", "PATCH", "/products/1", {"title": "Renamed"})
    caught_up(client, timeout=30)
    query_db = sandbox.root / "data" / "query" / "query.db"
    with sqlite3.connect(query_db) as conn:  # the test breaks it
        conn.execute("DELETE FROM orders_replica WHERE user_id = 1")
    assert sandbox.run("verify").returncode == 1
    result = sandbox.run("replay", "query", check=True).stdout
    assert result.startswith("rebuilt the read model from position 0: 3,071 events in ")
    assert sandbox.run("verify").returncode == 0
    with sqlite3.connect(sandbox.root / "data" / "query" / "query.db") as conn:
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master")}
    assert "orders_replica_next" not in tables and "orders_replica_by_product" in tables
    # it goes on consuming after the swap
    order = client.request("orders", "POST", "/orders?wait_published_ms=2000",
                           {"user_id": 2, "product_id": 1})
    after = client.request("query", "GET",
                           f"/user-orders/2?after={order['event']['position']}")
    assert order["id"] in [o["order_id"] for o in after["orders"]]
    refused = client.exchange("query", "POST", "/replay")
    assert refused[0] == 401
    other = sandbox.run("replay", "orders")
    assert other.returncode == 2 and "orders has no read model to rebuild" in other.stderr


def test_timeouts_are_per_dependency(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sandbox", MSSHOP_TIMEOUT_USERS="0.05") as sandbox:
        client = sandbox.client()
        client.request("users", "POST", "/users", {"email": "t@example.com", "name": "T"})
        sandbox.run("chaos", "orders", "--latency", "150", check=True)
        # orders is slow but within the default 2 s: answered
        assert client.request("query", "GET", "/user-orders/1?strategy=direct-call")["user"]
        sandbox.run("chaos", "users", "--latency", "150", check=True)
        status, answer = client.exchange("query", "GET", "/user-orders/1?strategy=direct-call")
        assert (status, answer["error"]) == (503, "users did not answer within 0.05 s")
        spans = sandbox.run("query", "--user", "1", "--strategy", "direct-call", "--json")
        assert spans.returncode == 1  # the trace was stored all the same
        trace = sandbox.run("trace", "last", check=True).stdout
        assert "GET users" in trace and "timeout" in trace
