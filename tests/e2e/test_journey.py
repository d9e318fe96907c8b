"""A write followed to the read model (`buy --trace`, `signup --trace`): one trace from the
CLI through orders, its takes in products and users, the insert and its outbox row, the
relay's publish, the bus's append and the query service's apply, in causal order, on both
bus backends; and a write nobody asked to follow records none of that."""

from __future__ import annotations

import json
from typing import Any

from msshop.contracts.spans import Span
from msshop.instruments.checking import caught_up
from tests.conftest import Sandbox


def stored(sandbox: Sandbox, trace_id: str) -> list[Span]:
    listed = json.loads(sandbox.run("traces", "--json", "-n", "1", check=True).stdout)
    assert listed[0]["trace_id"] == trace_id and listed[0]["kind"] == "write"
    path = sandbox.root / "traces" / f"{trace_id}.json"
    spans: list[Span] = json.loads(path.read_text())["spans"]
    return spans


def one(spans: list[Span], service: str, name: str) -> Span:
    found = [s for s in spans if s["service"] == service and s["name"] == name]
    assert len(found) == 1, (service, name, [(s["service"], s["name"]) for s in spans])
    return found[0]


def ends(span: Span) -> float:
    return float(span["start"]) + float(span["duration_ms"]) / 1000


def test_a_purchase_is_traced_to_the_read_model_in_causal_order(any_sandbox: Sandbox
                                                                  ) -> None:
    sandbox = any_sandbox
    sandbox.run("seed", "--users", "5", "--products", "3", "--orders", "10", check=True)
    caught_up(sandbox.client(), timeout=10)
    shown = sandbox.run("buy", "--user", "2", "--product", "3", "--trace", check=True).stdout
    trace_id = shown.split("trace ", 1)[1].split()[0]
    assert "replicated: committed at the source, applied in the read model" in shown
    spans = stored(sandbox, trace_id)
    assert {s["trace_id"] for s in spans} == {trace_id}
    request = one(spans, "orders", "POST /orders")
    # the takes (issue 26, direct-call): products' stock first (it answers the price), then
    # users' credit
    one(spans, "users", "POST /users/takes"), one(spans, "products", "POST /products/takes")
    checks = [one(spans, "orders", "POST products"), one(spans, "orders", "POST users")]
    assert ends(checks[0]) <= checks[1]["start"], "stock taken before credit"
    insert = one(spans, "orders", "INSERT orders")
    publish = one(spans, "orders", "publish OrderPlaced")
    apply = one(spans, "query", "apply OrderPlaced")
    position = publish["attributes"]["msshop.position"]
    assert apply["attributes"]["msshop.position"] == position
    assert all(request["start"] <= c["start"] and ends(c) <= insert["start"] for c in checks)
    assert ends(insert) <= publish["start"] <= apply["start"], "commit, publish, apply"
    assert apply["attributes"]["msshop.lag_ms"] > 0
    assert apply["attributes"]["db.name"] == "query.db"
    if sandbox.backend == "log":  # the sandbox's own log records its part too
        append = one(spans, "bus", "append OrderPlaced")
        assert append["attributes"]["msshop.position"] == position
        assert publish["start"] <= append["start"] <= apply["start"]
        assert {s["service"] for s in spans} == {"cli", "orders", "users", "products", "bus",
                                                 "query"}
    else:  # JetStream keeps no spans of ours; the publish's ack carries the position
        assert {s["service"] for s in spans} == {"cli", "orders", "users", "products",
                                                 "query"}


def test_a_sign_up_is_traced_and_an_unfollowed_write_records_no_journey(
        shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    shown = sandbox.run("signup", "--email", "j@example.com", "--name", "J", "--trace",
                        "--view", "timeline", check=True).stdout
    trace_id = shown.split("trace ", 1)[1].split()[0]
    names = {(s["service"], s["name"]) for s in stored(sandbox, trace_id)}
    assert {("users", "publish UserSignedUp"), ("bus", "append UserSignedUp"),
            ("query", "apply UserSignedUp")} <= names
    sandbox.run("signup", "--email", "k@example.com", "--name", "K", check=True)
    caught_up(sandbox.client(), timeout=10)
    events: dict[str, Any] = {e.data["email"]: e for e in sandbox.bus_events()
                              if e.type == "UserSignedUp"}
    assert events["j@example.com"].parent_span is not None, "followed"
    assert events["k@example.com"].parent_span is None, "not asked: nothing more recorded"
    assert events["k@example.com"].trace_id is not None
