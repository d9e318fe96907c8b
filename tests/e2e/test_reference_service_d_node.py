"""The reference Service D in JavaScript (examples/service-d-node), run as a real Node
process next to a real sandbox: the same contract and the same checks as the Python one
(tests/e2e/test_reference_service_d.py, whose helpers these tests run it with). Its read
model is a JSON file instead of SQLite, so the crash test reads the position from there."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from msshop.contracts.answers import ReplicaFreshness, UserOrders
from msshop.contracts.spans import new_span_id, new_trace_id
from msshop.contracts.status import ConsumerHealth
from msshop.instruments.asking import databases
from msshop.instruments.monolith import all_user_orders
from tests.conftest import ROOT, Sandbox, running_sandbox
from tests.e2e.test_reference_service_d import (
    Reference,
    assert_equals_monolith,
    free_port,
    keys,
    owner_spans,
    reference,
    seed,
    until,
)

pytestmark = pytest.mark.skipif(shutil.which("node") is None,
                                reason="the JavaScript Service D needs `node` (Node 20) on PATH")

PROGRAM = ROOT / "examples" / "service-d-node" / "service_d.js"
COMMAND = ("node", str(PROGRAM))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Reference]]:
    root = tmp_path_factory.mktemp("reference-node")
    with running_sandbox(root / "sandbox") as sandbox:
        seed(sandbox, users=40, products=15, orders=500)
        with reference(sandbox, root / "service-d", COMMAND) as program:
            program.caught_up()
            yield sandbox, program


def test_both_strategies_equal_the_monolith_for_every_user(seeded: tuple[Sandbox, Reference]
                                                           ) -> None:
    _, program = seeded
    assert assert_equals_monolith(program, ("replicated", "direct-call")) == 40
    status, naive = program.get("/user-orders/1?strategy=direct-call&fanout=naive")
    assert status == 200
    assert naive["orders"] == all_user_orders(databases(program.sandbox.state))[1]
    status, health = program.get("/health")
    assert (health["service"], health["status"], health["pid"]) == (
        "query", "ok", program.process.pid if program.process else None)
    consumer = health["consumer"]
    assert set(consumer) == keys(ConsumerHealth), "the shape of our query service's /health"
    assert consumer["behind"] == 0 and consumer["dead_letters"] == 0
    assert consumer["listening"] is True and consumer["bus_error"] is None


def test_errors_are_ours_in_shape_and_status(seeded: tuple[Sandbox, Reference]) -> None:
    _, program = seeded
    for strategy in ("replicated", "direct-call"):
        status, error = program.get(f"/user-orders/424242?strategy={strategy}")
        assert status == 404 and error["error"].startswith("no user with id 424242"), error
        assert (error["status"], error["service"]) == (404, "query")
    for path in ("/user-orders/abc", "/user-orders/1?strategy=telepathy",
                 "/user-orders/1?partial=1", "/user-orders/%C2%B2", "/user-orders/%zz",
                 "/user-orders/1?after=%C2%B2", "/user-orders/1?wait_ms=-1",
                 "/user-orders/1?after=x", "/user-orders/99999999999999999999"):
        status, error = program.get(path)
        assert status == 422 and set(error) == {"error", "status", "service"}, (path, error)
    conn = http.client.HTTPConnection("127.0.0.1", program.port, timeout=10)
    conn.request("POST", "/user-orders/1", body=b"{}")
    response = conn.getresponse()
    assert response.status == 405 and json.loads(response.read())["service"] == "query"
    conn.close()
    status, error = program.get("/no/such/route")
    assert status == 404 and error["service"] == "query"
    status, error = program.get("/user-orders/1?after=999999999&wait_ms=50")
    assert status == 503 and "not applied bus position 999999999 within 50 ms" in error[
        "error"]
    assert error["freshness"]["position"] >= 1


def test_replicated_reads_its_own_writes_with_after(seeded: tuple[Sandbox, Reference]
                                                    ) -> None:
    sandbox, program = seeded
    order, _ = sandbox.client().buy(3, 4, quantity=2, wait_published_ms=2000)
    event = order.get("event")
    assert event is not None and event["position"] is not None, order
    position = event["position"]
    status, answer = program.get(f"/user-orders/3?strategy=replicated&after={position}"
                                 "&wait_ms=5000")
    assert status == 200, answer
    assert order["id"] in [line["order_id"] for line in answer["orders"]]
    assert answer["freshness"]["position"] >= position
    assert set(answer) <= keys(UserOrders) and set(answer["freshness"]) == keys(
        ReplicaFreshness)


def test_it_forwards_traceparent_with_a_span_per_call(seeded: tuple[Sandbox, Reference]
                                                      ) -> None:
    sandbox, program = seeded
    trace_id, parent = new_trace_id(), new_span_id()
    status, answer = program.get("/user-orders/5?strategy=direct-call",
                                 {"traceparent": f"00-{trace_id}-{parent}-01"})
    assert status == 200 and answer["trace_id"] == trace_id
    callers = {}
    for service in ("users", "orders", "products"):
        (served,) = [s for s in sandbox.client().spans(service, trace_id)
                     if s["kind"] == "server"]
        callers[service] = served["parent_id"]
    own = owner_spans(program, trace_id)
    server = next(s for s in own if s["kind"] == "server")
    assert server["parent_id"] == parent
    calls = {s["attributes"]["peer.service"]: s for s in own if s["kind"] == "client"}
    assert {name: s["span_id"] for name, s in calls.items()} == callers
    assert len(set(callers.values())) == 3, "a new span id for each call"


def test_sigkill_mid_catch_up_resumes_and_applies_each_event_once(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sandbox") as sandbox:
        seed(sandbox, users=500, products=50, orders=30_000)
        head = sandbox.client().bus_head()
        program = Reference(sandbox, tmp_path / "service-d", free_port(), command=COMMAND)
        try:
            program.start()
            until(lambda: 0 < program.consumer()["position"] < head,
                  "the JavaScript program is part way through its catch-up", timeout=30)
            program.stop(signal.SIGKILL)
            stored = stored_position(program.data_dir)
            assert 0 < stored < head, (stored, head)
            program.start()
            consumer = program.caught_up(timeout=60)
            # it read on from the stored position: the events after it, each applied once
            assert consumer["applied"] == head - stored and consumer["dead_letters"] == 0
            assert f"from bus position {stored}" in program.log()
            assert assert_equals_monolith(program, ("replicated",)) == 500
        finally:
            program.stop()


def stored_position(data_dir: Path) -> int:
    """The position saved with the rows (a rename left no half-written file behind)."""
    position: int = json.loads((data_dir / "query-replica.json").read_text())["position"]
    return position


def test_products_down_fails_direct_call_and_not_replicated(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sandbox") as sandbox:
        seed(sandbox, users=10, products=5, orders=50)
        with reference(sandbox, tmp_path / "service-d", COMMAND) as program:
            program.caught_up()
            truth = all_user_orders(databases(sandbox.state))[2]
            # a kept-alive connection to products first: its loss must read as "down" too
            assert program.get("/user-orders/2?strategy=direct-call")[0] == 200
            sandbox.run("kill", "products", check=True)
            status, error = program.get("/user-orders/2?strategy=direct-call")
            assert status == 503, error
            assert error["dependency"] == "products" and error["service"] == "query"
            assert error["error"].startswith("products is down"), error
            status, answer = program.get("/user-orders/2?strategy=replicated")
            assert status == 200 and answer["orders"] == truth
            # SIGTERM, even with a long-poll of the bus open: it stops at once, cleanly
            started = time.monotonic()
            program.stop()
            assert program.process is not None and program.process.returncode == 0
            assert time.monotonic() - started < 2, program.log()


def test_run_by_msshop_as_the_query_service_it_passes_verify_and_compare(tmp_path: Path
                                                                          ) -> None:
    """`msshop up` runs the JavaScript program as Service D, and msshop's own checks hold
    it to the monolith: verify over every user, compare for one, both strategies."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_QUERY_COMMAND=f"node {PROGRAM}"
                         ) as sandbox:
        status = json.loads(sandbox.run("status", "--json", check=True).stdout)
        query = next(s for s in status["services"] if s["name"] == "query")
        assert query["kind"] == "executable" and query["health"] == "ok"
        sandbox.run("seed", "--users", "60", "--products", "15", "--orders", "400",
                    "--wait", check=True)
        verified = sandbox.run("verify", check=True)
        assert "equals the monolith join for all 60 users" in verified.stdout
        compared = sandbox.run("compare", "--user", "7", "--json", check=True)
        rows = json.loads(compared.stdout)["strategies"]
        assert len(rows) >= 3 and all(row["equal"] and not row["error"] for row in rows), rows
        direct = sandbox.run("query", "--user", "7", "--strategy", "direct-call", "--json",
                             check=True)
        answer = json.loads(direct.stdout)["answer"]
        assert answer["strategy"] == "direct-call" and answer["user"]["id"] == 7


def test_an_event_it_cannot_apply_is_dead_lettered_and_it_goes_on(
        seeded: tuple[Sandbox, Reference]) -> None:
    sandbox, program = seeded
    before = program.consumer()
    sandbox.run("poison", check=True)
    position = sandbox.client().bus_head()
    until(lambda: program.consumer()["position"] >= position, "the poison is read")
    assert program.consumer()["dead_letters"] == before["dead_letters"] + 1
    status, listed = program.get("/dead-letters?limit=1",
                                 {"authorization": f"Bearer {sandbox.state.token}"})
    assert status == 200, listed
    (newest,) = listed["dead_letters"]
    assert newest["position"] == position and "unknown event type" in newest["reason"]
    assert program.get("/dead-letters")[0] == 401
    stored = json.loads((program.data_dir / "query-replica.json").read_text())
    assert stored["position"] >= position and stored["dead_count"] == listed["count"]


def test_a_damaged_read_model_file_stops_it_with_one_line(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sandbox") as sandbox:
        program = Reference(sandbox, tmp_path / "service-d", free_port(), command=COMMAND)
        program.data_dir.mkdir(parents=True)
        (program.data_dir / "query-replica.json").write_text('{"position": 12, "us')
        with pytest.raises(AssertionError, match="exited 2") as raised:
            program.start()
        assert "cannot read the read model" in str(raised.value)
        assert "delete that file" in str(raised.value) and "Traceback" not in str(raised.value)
