"""Faults on one link (caller -> callee), with real processes: a partition between the query
service and the bus, or users, while everything else keeps talking; the bus handing the
query service events twice and out of order; and what is refused, and how."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from msshop.contracts.credentials import bearer
from msshop.instruments.checking import caught_up
from tests.conftest import Sandbox, one_purchase

PARTITION_BUS = ("chaos: query cannot reach bus (a partition on purpose); clear it with: "
                 "msshop chaos query --to bus --clear")


def consumer(sandbox: Sandbox) -> dict[str, Any]:
    found: dict[str, Any] = sandbox.client().request("query", "GET", "/health")["consumer"]
    return found


def owner_posts(sandbox: Sandbox, service: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST /chaos as the sandbox's owner: (status, answer)."""
    return sandbox.client().exchange(service, "POST", "/chaos", body,
                                     headers=bearer(sandbox.state.token))


def test_a_partition_from_query_to_the_bus_leaves_answers_served_but_stale(sandbox: Sandbox
                                                                          ) -> None:
    one_purchase(sandbox, "Hat", 10)
    client = sandbox.client()
    said = sandbox.run("chaos", "query", "--to", "bus", "--error-rate", "1", check=True,
                       env_extra={"COLUMNS": "80"}).stdout
    assert said.splitlines() == ["query -> bus: every call fails (a partition)",
                                 "clear with: msshop chaos query --to bus --clear"]
    # a long-poll the consumer opened before the cut still brings one append; the next read
    # meets the partition
    client.request("users", "POST", "/users", {"email": "wake@example.com", "name": "W"})
    deadline = time.monotonic() + 15
    while consumer(sandbox)["bus_error"] != PARTITION_BUS:
        assert time.monotonic() < deadline, consumer(sandbox)
        time.sleep(0.02)
    stale_at = consumer(sandbox)["position"]

    order = client.request("orders", "POST", "/orders?wait_published_ms=2000",
                           {"user_id": 1, "product_id": 1, "request_id": "while-cut"})
    assert order["event"]["position"] > stale_at, "the purchase is confirmed and on the bus"
    answer = client.request("query", "GET", "/user-orders/1")  # replicated: served, stale
    assert [o["title"] for o in answer["orders"]] == ["Hat"]
    assert answer["freshness"]["bus_error"] == PARTITION_BUS
    assert answer["freshness"]["caught_up"] is False
    health = client.request("query", "GET", "/health")
    assert health["chaos"] == {"latency_ms": 0, "jitter_ms": 0, "error_rate": 0, "links": {
        "bus": {"latency_ms": 0, "jitter_ms": 0, "error_rate": 1, "duplicate_rate": 0}}}
    query = next(s for s in sandbox.status()["services"] if s["name"] == "query")
    assert query["chaos"]["links"]["bus"]["error_rate"] == 1
    shown = sandbox.run("status", check=True, env_extra={"COLUMNS": "80"}).stdout
    assert "chaos on query -> bus: every call fails (a partition)" in shown
    assert "chaos in query" not in shown, "nothing on the requests query answers"
    assert client.request("users", "GET", "/health")["chaos"] is None, "a link of query's"

    cleared = sandbox.run("chaos", "query", "--to", "bus", "--clear", check=True).stdout
    assert cleared.splitlines() == ["query -> bus: no faults"]
    caught_up(client, timeout=30)
    answer = client.request("query", "GET", "/user-orders/1")
    assert [o["order_id"] for o in answer["orders"]] == [1, order["id"]]
    assert answer["freshness"]["caught_up"] is True
    assert client.request("query", "GET", "/health")["chaos"] is None


def test_a_partition_from_query_to_users_refuses_direct_call_only(sandbox: Sandbox) -> None:
    one_purchase(sandbox, "Boot", 50)
    client = sandbox.client()
    sandbox.run("chaos", "query", "--to", "users", "--error-rate", "1", check=True)
    status, answer = client.exchange("query", "GET", "/user-orders/1?strategy=direct-call")
    assert (status, answer["dependency"], answer["failure"]) == (503, "users", "partition")
    assert answer["error"] == ("chaos: query cannot reach users (a partition on purpose); "
                               "clear it with: msshop chaos query --to users --clear")
    said = sandbox.run("query", "--user", "1", "--strategy", "direct-call")
    assert said.returncode == 1 and "query cannot reach users" in said.stderr
    assert "Traceback" not in said.stderr
    replicated = client.request("query", "GET", "/user-orders/1")
    assert [o["title"] for o in replicated["orders"]] == ["Boot"]
    # everyone else still reaches users: orders asks it for each purchase
    client.request("orders", "POST", "/orders", {"user_id": 1, "product_id": 1})
    caught_up(client, timeout=10)
    assert len(client.request("query", "GET", "/user-orders/1")["orders"]) == 2

    sandbox.run("chaos", "query", "--clear", check=True)  # no --to: every fault
    answer = client.request("query", "GET", "/user-orders/1?strategy=direct-call")
    assert answer["user"]["id"] == 1 and len(answer["orders"]) == 2


def test_events_handed_over_twice_and_out_of_order_change_nothing(any_sandbox: Sandbox
                                                                  ) -> None:
    sandbox = any_sandbox
    client = sandbox.client()
    sandbox.run("chaos", "query", "--to", "bus", "--duplicate-rate", "0.5", check=True)
    sandbox.run("seed", "--users", "30", "--products", "10", "--orders", "300", check=True)
    for n in range(30):  # one at a time: small pages, each with earlier events mixed in
        client.request("orders", "POST", "/orders", {
            "user_id": 1 + n % 30, "product_id": 1 + n % 10, "request_id": f"again-{n}"})
    at = caught_up(client, timeout=60)
    assert consumer(sandbox)["applied"] > at.position * 1.2, "events were handed over again"
    verified = sandbox.run("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with sqlite3.connect(sandbox.root / "data" / "query" / "query.db") as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM orders_replica"
                            ).fetchone() == (330, 330)
    ids = [o["order_id"] for user in range(1, 31)
           for o in client.request("query", "GET", f"/user-orders/{user}")["orders"]]
    assert sorted(ids) == list(range(1, 331)), "each order once"
    assert consumer(sandbox)["dead_letters"] == 0


def test_bad_links_are_refused_in_one_line_naming_the_fix(sandbox: Sandbox) -> None:
    for args, says in [
        (("--to", "query", "--error-rate", "1"), "--to 'query': name the service that "
                                                 "query's calls to take faults go to, one "
                                                 "of: bus, users, products, orders"),
        (("--to", "nope", "--latency", "5"), "--to 'nope': name the service"),
        (("--duplicate-rate", "0.3"), "--duplicate-rate is the bus handing out events "
                                      "again: give it with --to bus"),
        (("--to", "users", "--duplicate-rate", "0.3"), "give it with --to bus"),
        (("--error-rate", "1.5"), "--error-rate 1.5: give a value from 0 to 1"),
        (("--to", "bus", "--latency", "-1"), "--latency -1: give a value from 0 to 60,000 ms"),
        (("--to", "bus", "--duplicate-rate", "2"), "--duplicate-rate 2: give a value from 0"),
        (("--to", "bus", "--clear", "--error-rate", "1"), "--clear removes every fault"),
        (("--to", "bus",), "say what to inject"),
    ]:
        bad = sandbox.run("chaos", "query", *args)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        lines = bad.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), bad.stderr
        assert says in bad.stderr, (args, bad.stderr)
    unknown = sandbox.run("chaos", "nope", "--to", "bus", "--error-rate", "1")
    assert unknown.returncode == 2 and "unknown service 'nope'" in unknown.stderr
    nobody = sandbox.run("chaos", "bus", "--to", "users", "--error-rate", "1")
    assert nobody.returncode == 2
    assert "bus calls no other service: put the link on its caller" in nobody.stderr
    status, answer = owner_posts(sandbox, "bus", {"to": "users", "error_rate": 1})
    assert status == 422 and answer["error"].startswith("bus calls no other service")

    refused: list[tuple[dict[str, Any], str]] = [
        ({"to": "query", "error_rate": 1},
         "to 'query': name another service of the sandbox (bus, users, products, orders)"),
        ({"to": "nope"}, "to 'nope': name another service"),
        ({"duplicate_rate": 0.5}, 'give it with "to": "bus"'),
        ({"to": "users", "duplicate_rate": 0.5}, 'give it with "to": "bus"'),
        ({"to": "bus", "error_rate": 2}, "error_rate 2.0 must be from 0 to 1"),
        ({"to": "bus", "duplicate_rate": -1}, "duplicate_rate -1.0 must be from 0 to 1"),
        ({"to": "bus", "partition": True}, "invalid request body: Object contains unknown "
                                           "field `partition`"),
        ({"to": 5}, "invalid request body: Expected `str | null`, got `int`"),
    ]
    for body, says in refused:
        status, answer = owner_posts(sandbox, "query", body)
        assert (status, answer["status"]) == (422, 422), (body, answer)
        assert says in answer["error"], (body, answer)
    assert sandbox.client().request("query", "GET", "/health")["chaos"] is None, \
        "nothing refused was applied"
    status, answer = sandbox.client().exchange("query", "POST", "/chaos", {"to": "bus"})
    assert status == 401, "links need the token too"


def test_clear_with_to_clears_that_link_and_without_it_everything(sandbox: Sandbox) -> None:
    assert owner_posts(sandbox, "query", {"latency_ms": 5})[0] == 200
    assert owner_posts(sandbox, "query", {"to": "users", "latency_ms": 7, "jitter_ms": 2})[0] \
        == 200
    status, answer = owner_posts(sandbox, "query", {"to": "bus", "error_rate": 0.3,
                                                    "duplicate_rate": 0.2})
    assert status == 200 and answer == {
        "service": "query", "chaos": {"latency_ms": 5, "jitter_ms": 0, "error_rate": 0},
        "links": {"users": {"latency_ms": 7, "jitter_ms": 2, "error_rate": 0,
                            "duplicate_rate": 0},
                  "bus": {"latency_ms": 0, "jitter_ms": 0, "error_rate": 0.3,
                          "duplicate_rate": 0.2}}}
    said = sandbox.run("chaos", "query", "--to", "bus", "--clear", check=True,
                       env_extra={"COLUMNS": "80"}).stdout.splitlines()
    assert said == ["query -> bus: no faults",
                    "query: every request delayed 5 ms",
                    "query -> users: each call delayed 7 ms (+0..2 ms)",
                    "clear the rest with: msshop chaos query --clear"]
    answer = json.loads(sandbox.run("chaos", "query", "--to", "users", "--error-rate", "0.3",
                                    "--json", check=True).stdout)
    assert answer["links"] == {"users": {"latency_ms": 0, "jitter_ms": 0, "error_rate": 0.3,
                                         "duplicate_rate": 0}}, "a link's faults replaced"
    cleared = json.loads(sandbox.run("chaos", "query", "--clear", "--json",
                                     check=True).stdout)
    assert cleared == {"service": "query", "chaos": None, "links": {}}
    assert sandbox.client().request("query", "GET", "/health")["chaos"] is None
