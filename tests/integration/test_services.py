"""The three services over real HTTP, each a real process with its own SQLite file."""

from __future__ import annotations

import http.client
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sandbox


def raw(sandbox: Sandbox, service: str, method: str, path: str, body: bytes
        ) -> tuple[int, bytes]:
    info = sandbox.state.services[service]
    conn = http.client.HTTPConnection("127.0.0.1", info.port, timeout=10)
    conn.request(method, path, body=body, headers={"content-type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


def test_health_names_the_service_and_its_own_file(shared_sandbox: Sandbox) -> None:
    client = shared_sandbox.client()
    for name in ("bus", "users", "products", "orders", "query"):
        health = client.request(name, "GET", "/health")
        assert health["service"] == name
        assert health["status"] == "ok"
        assert health["db"] == str(shared_sandbox.root / "data" / name / f"{name}.db")
        assert health["rows"]


def test_sign_up_then_look_up_one_and_many(shared_sandbox: Sandbox) -> None:
    client = shared_sandbox.client()
    status, ada = client.exchange("users", "POST", "/users",
                                  {"email": "Ada@Example.com ", "name": " Ada Lovelace"})
    assert status == 201
    assert (ada["email"], ada["name"]) == ("ada@example.com", "Ada Lovelace")
    assert client.request("users", "GET", f"/users/{ada['id']}") == ada
    many = client.request("users", "GET", f"/users?ids={ada['id']},999999")
    assert many == {"users": [ada], "missing": [999999]}


def test_users_errors_are_json_and_name_the_problem(shared_sandbox: Sandbox) -> None:
    client = shared_sandbox.client()
    client.request("users", "POST", "/users", {"email": "grace@example.com", "name": "Grace"})
    cases = [
        ("POST", "/users", {"email": "grace@example.com", "name": "G"}, 409,
         "email grace@example.com is already signed up"),
        ("GET", "/users/424242", None, 404, "no user with id 424242"),
        ("GET", "/users/abc", None, 422, "user_id 'abc' is not an id: ids are positive integers"),
        ("POST", "/users", {"email": "not-an-email", "name": "X"}, 422,
         "email 'not-an-email' is not an email address"),
        ("POST", "/users", {"name": "X"}, 422,
         "invalid request body: Object missing required field `email`"),
        ("POST", "/users", {"email": 5, "name": "X"}, 422,
         "invalid request body: Expected `str`, got `int` - at `$.email`"),
        ("GET", "/users", None, 422, "list users by id: GET /users?ids=1,2,3"),
        ("GET", "/nowhere", None, 404, "users has no route GET /nowhere"),
        ("DELETE", "/users", None, 405, "users does not allow DELETE on /users"),
    ]
    for method, path, body, status, message in cases:
        got_status, answer = client.exchange("users", method, path, body)
        assert (got_status, answer["error"]) == (status, message), (method, path)
        assert answer["service"] == "users"


def test_malformed_json_body_is_422(shared_sandbox: Sandbox) -> None:
    status, body = raw(shared_sandbox, "users", "POST", "/users", b"{not json")
    assert status == 422
    assert b"request body is not valid JSON" in body
    status, body = raw(shared_sandbox, "orders", "POST", "/orders", b"")
    assert status == 422
    assert b"request body is empty" in body


def test_products_create_list_page_batch_and_patch(shared_sandbox: Sandbox) -> None:
    client = shared_sandbox.client()
    status, hat = client.exchange("products", "POST", "/products",
                                  {"title": "Red beanie", "price": 19.99, "stock": 5})
    assert status == 201
    assert (hat["title"], hat["price"], hat["stock"]) == ("Red beanie", 19.99, 5)
    status, answer = client.exchange("products", "POST", "/products",
                                     {"title": "Cheap", "price": 1.234})
    assert (status, answer["error"]) == (
        422, "price 1.234 must be from 0 to 1000000 with at most two decimal places")
    changed = client.request("products", "PATCH", f"/products/{hat['id']}", {"price": 24.5})
    assert changed["price"] == 24.5 and changed["title"] == "Red beanie"
    status, answer = client.exchange("products", "PATCH", f"/products/{hat['id']}", {})
    assert (status, answer["error"]) == (422, "nothing to change: send price and/or title")
    status, answer = client.exchange("products", "PATCH", "/products/999999", {"price": 1})
    assert (status, answer["error"]) == (404, "no product with id 999999")

    batch = [{"sku": f"T-{i}", "title": f"Test sock {i}", "price": 5, "stock": 1}
             for i in range(5)]
    first = client.request("products", "POST", "/products/batch", {"products": batch})
    again = client.request("products", "POST", "/products/batch", {"products": batch})
    assert first["created"] == 5 and again["created"] == 0
    assert first["ids"] == again["ids"]

    seen: list[int] = []
    after = 0
    while True:
        page = client.request("products", "GET", f"/products?limit=2&after={after}")
        seen.extend(p["id"] for p in page["products"])
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == sorted(seen) and set(first["ids"]) | {hat["id"]} <= set(seen)
    status, answer = client.exchange("products", "GET", "/products?limit=0")
    assert (status, answer["error"]) == (
        422, "query parameter limit='0' must be an integer from 1 to 1000")


def test_purchase_checks_user_and_product_and_records_the_price_paid(shared_sandbox: Sandbox
                                                                      ) -> None:
    client = shared_sandbox.client()
    buyer = client.request("users", "POST", "/users", {"email": "b@example.com", "name": "B"})
    shoe = client.request("products", "POST", "/products", {"title": "Boot", "price": 80,
                                                                "stock": 100})
    status, order = client.exchange("orders", "POST", "/orders", {
        "user_id": buyer["id"], "product_id": shoe["id"], "quantity": 2, "request_id": "r-1"})
    assert status == 201
    assert (order["unit_price"], order["total"]) == (80.0, 160.0)
    # the price changes later; the order keeps what was paid
    client.request("products", "PATCH", f"/products/{shoe['id']}", {"price": 99})
    listed = client.request("orders", "GET", f"/orders?user_id={buyer['id']}")["orders"]
    assert [(o["id"], o["unit_price"]) for o in listed] == [(order["id"], 80.0)]
    # the same request id again is the same order, not a second purchase
    status, again = client.exchange("orders", "POST", "/orders", {
        "user_id": buyer["id"], "product_id": shoe["id"], "quantity": 2, "request_id": "r-1"})
    assert (status, again["id"]) == (200, order["id"])

    for body, message in [
        ({"user_id": 987654, "product_id": shoe["id"]}, "user_id 987654: no such user"),
        ({"user_id": buyer["id"], "product_id": 987654}, "product_id 987654: no such product"),
        ({"user_id": buyer["id"], "product_id": shoe["id"], "quantity": 0},
         "quantity 0 must be from 1 to 1000"),
        ({"user_id": 0, "product_id": shoe["id"]}, "user_id 0 is not an id: ids are positive "
                                                   "integers"),
    ]:
        status, answer = client.exchange("orders", "POST", "/orders", body)
        assert (status, answer["error"]) == (422, message)


def test_purchases_arriving_together_each_get_their_own_answer(shared_sandbox: Sandbox
                                                              ) -> None:
    """Concurrent purchases are checked and committed together (orders coalesces them): a
    bad one among them fails alone, a request id sent twice is one order, and each trace
    shows the insert of its order, or the trace of the batch that did it."""
    client = shared_sandbox.client()
    buyer = client.request("users", "POST", "/users", {"email": "t@example.com", "name": "T"})
    cap = client.request("products", "POST", "/products", {"title": "Cap", "price": 7,
                                                              "stock": 1000})
    bodies = [{"user_id": buyer["id"], "product_id": cap["id"], "request_id": f"tog-{n % 30}"}
              for n in range(40)]  # ten request ids sent twice
    bodies += [{"user_id": 777000 + n, "product_id": cap["id"]} for n in range(8)]

    def buy(body: dict[str, object]) -> tuple[int, dict[str, Any], str]:
        info = shared_sandbox.state.services["orders"]
        conn = http.client.HTTPConnection("127.0.0.1", info.port, timeout=10)
        conn.request("POST", "/orders", body=json.dumps(body),
                     headers={"content-type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read()), response.headers["x-trace-id"]

    # users answers 30 ms late, so every purchase arrives while a check is in flight: the
    # batching is certain, not a matter of how fast threads start on a loaded machine
    shared_sandbox.run("chaos", "users", "--latency", "30", check=True)
    try:
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(buy, bodies))
    finally:
        shared_sandbox.run("chaos", "users", "--clear", check=True)

    good, bad = answers[:40], answers[40:]
    assert [(status, answer["error"]) for status, answer, _ in bad] == [
        (422, f"user_id {777000 + n}: no such user") for n in range(8)]
    assert all(status in (200, 201) for status, _, _ in good)
    pairs = list(zip(bodies[:40], good, strict=True))
    ids = {body["request_id"]: answer["id"] for body, (_, answer, _) in pairs}
    assert all(answer["id"] == ids[body["request_id"]] for body, (_, answer, _) in pairs), \
        "a request id sent twice is one order"
    listed = client.request("orders", "GET", f"/orders?user_id={buyer['id']}")["orders"]
    assert sorted(o["id"] for o in listed) == sorted(ids.values())
    assert sorted(status for status, _, _ in good).count(201) == 30

    batched_traces = 0
    for status, answer, trace_id in good:
        spans = client.spans("orders", trace_id)
        batched = [s for s in spans if s["name"] == "checkout (batched)"]
        if batched:
            batched_traces += 1
            trace_id = batched[0]["attributes"]["msshop.batch.trace_id"]
            spans = client.spans("orders", trace_id)
        inserted = {key for s in spans if s["name"] == "INSERT orders"
                    for key in s["attributes"]["msshop.keys"]}
        assert status == 200 or answer["id"] in inserted, (answer, spans)
    assert batched_traces, "48 purchases at once: some were checked and committed together"


def test_batch_purchase_is_all_or_nothing(shared_sandbox: Sandbox) -> None:
    client = shared_sandbox.client()
    buyer = client.request("users", "POST", "/users", {"email": "c@example.com", "name": "C"})
    hat = client.request("products", "POST", "/products", {"title": "Hat", "price": 10,
                                                              "stock": 100})
    good = {"user_id": buyer["id"], "product_id": hat["id"]}
    status, answer = client.exchange("orders", "POST", "/orders/batch", {"orders": [
        good, {"user_id": 888888, "product_id": hat["id"]}]})
    assert (status, answer["error"]) == (422, "user_id 888888: no such user; nothing was "
                                              "recorded")
    assert client.request("orders", "GET", f"/orders?user_id={buyer['id']}")["orders"] == []
    answer = client.request("orders", "POST", "/orders/batch", {"orders": [good, good]})
    assert answer == {"created": 2, "existing": 0}
    status, answer = client.exchange("orders", "POST", "/orders/batch", {"orders": []})
    assert (status, answer["error"]) == (
        422, "invalid request body: Expected `array` of length >= 1 - at `$.orders`")


#: a saga's participant's own (issue 26): its step consumer's position and dead letters,
#: and the steps it has done
SAGA_TABLES = ("consumer_offsets", "dead_letters", "saga_steps")


def test_each_service_wrote_only_its_own_file(shared_sandbox: Sandbox) -> None:
    data = shared_sandbox.root / "data"
    tables = {}
    for name in ("bus", "users", "products", "orders", "query"):
        with sqlite3.connect(f"file:{data / name / (name + '.db')}?mode=ro", uri=True) as conn:
            tables[name] = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {
        "bus": {"events", "log"},
        "users": {"users", "outbox", "credit_given", "credit_takes", *SAGA_TABLES},
        "products": {"products", "outbox", "stock_given", "stock_takes", *SAGA_TABLES},
        "orders": {"orders", "outbox", "sagas", *SAGA_TABLES},  # sagas: the orchestrator's
        "query": {"users_replica", "products_replica", "orders_replica", "consumer_offsets",
                  "dead_letters"}}
    assert sorted(p.name for p in data.glob("*/*.db")) == [
        "bus.db", "orders.db", "products.db", "query.db", "users.db"]


@pytest.fixture
def orders_without_products(sandbox: Sandbox) -> Sandbox:
    sandbox.run("stop", "products", check=True)
    return sandbox


def test_purchase_with_products_down_is_503_naming_products(orders_without_products: Sandbox
                                                            ) -> None:
    client = orders_without_products.client()
    user = client.request("users", "POST", "/users", {"email": "d@example.com", "name": "D"})
    status, answer = client.exchange("orders", "POST", "/orders",
                                     {"user_id": user["id"], "product_id": 1})
    assert status == 503
    assert answer["dependency"] == "products"
    assert answer["error"].startswith("products is down: connection refused at http://127.0.0.1:")
    assert answer["error"].endswith("; start it with: msshop start products")
    assert client.request("orders", "GET", f"/orders?user_id={user['id']}")["orders"] == []


def test_service_log_files_exist(shared_sandbox: Sandbox) -> None:
    logs = Path(shared_sandbox.root / "logs")
    for name in ("bus", "users", "products", "orders", "query", "supervisor"):
        assert (logs / f"{name}.log").stat().st_size > 0
