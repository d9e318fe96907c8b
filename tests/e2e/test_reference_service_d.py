"""The reference Service Ds, in plain Python (examples/service-d-python) and in JavaScript
(examples/service-d-node), each run as a real process next to a real sandbox, written
against the foreign-service contract (docs/protocol.md): its answers equal the monolith's by
both strategies, it reads its own writes, resumes after SIGKILL applying each event once,
survives a dependency down, and forwards traceparent.

One suite, run against every implementation (as an abstract test case runs against every
recorder): the shared tests take `impl`, a small description of one program (its command,
how to read its stored position from its data directory); the tests that exist for one
program only stay below, for that program only. The Node parameter skips where `node` is
not on PATH.

Until the supervisor runs foreign programs itself, the test starts it: a service.json as
the contract says, its own directory under tmp_path, a free port."""

from __future__ import annotations

import ast
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from msshop.contracts.answers import ReplicaFreshness, UserOrders
from msshop.contracts.credentials import bearer, digest, service_credential
from msshop.contracts.protocol import ServiceFile
from msshop.contracts.spans import new_span_id, new_trace_id
from msshop.contracts.status import ConsumerHealth
from msshop.instruments.asking import databases
from msshop.instruments.checking import caught_up, differences
from msshop.instruments.monolith import all_user_orders, all_users
from tests.conftest import ROOT, Sandbox, msshop, one_purchase, running_sandbox, sandbox_env
from tests.e2e.test_broker import nats_server  # noqa: F401  (the fixture: a server of our own)

PROGRAM = ROOT / "examples" / "service-d-python" / "service.py"
NODE_PROGRAM = ROOT / "examples" / "service-d-node" / "service.js"
NO_NODE = pytest.mark.skipif(shutil.which("node") is None,
                             reason="the JavaScript Service D needs `node` (Node 20) on PATH")


def sqlite_stored(data_dir: Path) -> tuple[int, int]:
    """The Python program's position and dead-letter count, saved with its rows in SQLite."""
    with contextlib.closing(sqlite3.connect(data_dir / "query-replica.db")) as conn:
        (position,) = conn.execute("SELECT position FROM bus_position").fetchone()
        (dead,) = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    return int(position), int(dead)


def json_stored(data_dir: Path) -> tuple[int, int]:
    """The Node program's position and dead-letter count, saved with its rows in its JSON
    file (a rename left no half-written file behind)."""
    stored = json.loads((data_dir / "query-replica.json").read_text())
    return int(stored["position"]), int(stored["dead_count"])


@dataclass(frozen=True)
class Implementation:
    """One reference Service D: what differs between the programs the suite runs against."""

    name: str
    program: Path
    command: tuple[str, ...]
    stored: Callable[[Path], tuple[int, int]]  # (position, dead letters) from its data dir
    model_file: str  # its read model's file in its data directory, named by its db spans

    def shell_command(self) -> str:
        return " ".join(self.command)


PYTHON = Implementation("python", PROGRAM, (sys.executable, str(PROGRAM)), sqlite_stored,
                        "query-replica.db")
NODE = Implementation("node", NODE_PROGRAM, ("node", str(NODE_PROGRAM)), json_stored,
                      "query-replica.json")
IMPLEMENTATIONS = [pytest.param(PYTHON, id="python"),
                   pytest.param(NODE, id="node", marks=NO_NODE)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Reference:
    """The reference program running as the query service, beside a sandbox."""

    sandbox: Sandbox
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    command: tuple[str, ...] = (sys.executable, str(PROGRAM))  # the program to run

    def write_service_file(self) -> Path:
        state = self.sandbox.state
        peers = {name: s.url for name, s in state.services.items()
                 if name in ("bus", "users", "products", "orders")}
        document = {
            "protocol": 1, "service": "query", "host": "127.0.0.1", "port": self.port,
            "data_dir": str(self.data_dir), "peers": peers,
            "credential": service_credential(state.token, "query"),
            "owner_digest": digest(state.token),
            "bus": {"backend": "log", "url": peers["bus"]}}
        path = self.data_dir / "service.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps(document))
        return path

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MSSHOP_")}
        env.update(MSSHOP_SERVICE="query", MSSHOP_HOST="127.0.0.1", MSSHOP_PORT=str(self.port),
                   MSSHOP_DATA_DIR=str(self.data_dir), MSSHOP_PROTOCOL="1",
                   MSSHOP_SERVICE_FILE=str(self.write_service_file()))
        with (self.data_dir / "query.log").open("ab") as log:
            self.process = subprocess.Popen(list(self.command), env=env,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        until(lambda: self.answers_health(), "the reference program answers /health")

    def answers_health(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the reference program exited {self.process.returncode}: "
                                 + self.log())
        with contextlib.suppress(OSError):
            return self.get("/health")[0] == 200
        return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """End the program by its pid (SIGKILL if SIGTERM does not end it in 5 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, sig)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def consumer(self) -> dict[str, Any]:
        status, health = self.get("/health")
        assert status == 200, health
        found: dict[str, Any] = health["consumer"]
        return found

    def caught_up(self, timeout: float = 30) -> dict[str, Any]:
        """Wait until it has applied the bus's head (after the sandbox's outboxes are
        drained: our own query service caught up says so)."""
        caught_up(self.sandbox.client(), timeout=timeout)
        head = self.sandbox.client().bus_head()
        until(lambda: self.consumer()["position"] >= head and self.consumer()["caught_up"],
              f"the reference program applies the bus up to {head}", timeout)
        return self.consumer()

    def log(self) -> str:
        return (self.data_dir / "query.log").read_text(errors="replace")[-2000:]


def keys(typed: Any) -> set[str]:
    """Every key a TypedDict of msshop's contracts names."""
    return set(typed.__required_keys__ | typed.__optional_keys__)


def until(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting until {what}")


@contextlib.contextmanager
def reference(sandbox: Sandbox, data_dir: Path,
              command: tuple[str, ...] = (sys.executable, str(PROGRAM))) -> Iterator[Reference]:
    program = Reference(sandbox, data_dir, free_port(), command=command)
    try:
        program.start()
        yield program
    finally:
        program.stop()


def seed(sandbox: Sandbox, users: int, products: int, orders: int) -> None:
    sandbox.run("seed", "--users", str(users), "--products", str(products), "--orders",
                str(orders), "--seed", "24", check=True, timeout=120)
    client = sandbox.client()
    for product_id in (1, 2):  # renamed after they were bought: every answer shows the new
        client.request("products", "PATCH", f"/products/{product_id}",
                       {"title": f"Renamed {product_id}"})
    caught_up(client, timeout=60)


def assert_equals_monolith(program: Reference, strategies: tuple[str, ...]) -> int:
    """Every user's answer by each strategy against the monolith's join; the users checked."""
    files = databases(program.sandbox.state)
    truth, people = all_user_orders(files), all_users(files)
    for user_id, orders in truth.items():
        for strategy in strategies:
            status, answer = program.get(f"/user-orders/{user_id}?strategy={strategy}")
            assert status == 200, (user_id, strategy, answer)
            assert answer["user"] == people[user_id], (user_id, strategy)
            assert answer["orders"] == orders, (user_id, strategy,
                                                differences(orders, answer["orders"]))
    return len(truth)


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> Implementation:
    """The program under test: every shared test runs once for each implementation."""
    found: Implementation = request.param
    return found


@pytest.fixture(scope="module")
def seeded(impl: Implementation, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Sandbox, Reference]]:
    root = tmp_path_factory.mktemp(f"reference-{impl.name}")
    with running_sandbox(root / "sandbox") as sandbox:
        seed(sandbox, users=40, products=15, orders=500)
        with reference(sandbox, root / "service-d", impl.command) as program:
            program.caught_up()
            yield sandbox, program


# -- the shared suite: every test here runs against each implementation -------------------


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
    client = sandbox.client()
    order, _ = client.buy(3, 4, quantity=2, wait_published_ms=2000)
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
    assert answer == {**answer, "question": "user-orders", "strategy": "replicated"}


def test_an_event_it_cannot_apply_is_dead_lettered_and_it_goes_on(
        impl: Implementation, seeded: tuple[Sandbox, Reference]) -> None:
    sandbox, program = seeded
    before = program.consumer()
    sandbox.run("poison", check=True)
    position = sandbox.client().bus_head()
    until(lambda: program.consumer()["position"] >= position, "the poison is read")
    after = program.consumer()
    assert after["dead_letters"] == before["dead_letters"] + 1
    status, listed = program.get("/dead-letters?limit=1",
                                 {"authorization": f"Bearer {sandbox.state.token}"})
    assert status == 200 and listed["count"] == after["dead_letters"], listed
    (newest,) = listed["dead_letters"]
    assert newest["position"] == position and "unknown event type" in newest["reason"]
    assert program.get("/dead-letters")[0] == 401
    # stored with its rows: the position past the poison, the dead letter counted
    stored, dead = impl.stored(program.data_dir)
    assert stored >= position and dead == listed["count"]
    # and it still follows the bus: the next purchase reaches its read model
    order, _ = sandbox.client().buy(6, 3, wait_published_ms=2000)
    event = order.get("event")
    assert event is not None and event["position"] is not None
    status, answer = program.get(f"/user-orders/6?after={event['position']}&wait_ms=5000")
    assert status == 200 and order["id"] in [o["order_id"] for o in answer["orders"]]


def test_callees_spans_carry_the_forwarded_trace(seeded: tuple[Sandbox, Reference]) -> None:
    """traceparent forwarded with a span per call: a new span id for each."""
    sandbox, program = seeded
    trace_id, parent = new_trace_id(), new_span_id()
    status, answer = program.get("/user-orders/5?strategy=direct-call",
                                 {"traceparent": f"00-{trace_id}-{parent}-01"})
    assert status == 200 and answer["trace_id"] == trace_id
    assert set(answer) <= keys(UserOrders) and answer["freshness"] == {"live": True}
    client = sandbox.client()
    callers: dict[str, str] = {}
    for service in ("users", "orders", "products"):
        served = [s for s in client.spans(service, trace_id) if s["kind"] == "server"]
        assert len(served) == 1, f"{service}'s spans of trace {trace_id}: {served}"
        callers[service] = served[0]["parent_id"]
    # each call went as a child span of its own, which the program serves in msshop's
    # format (GET /spans, the owner's token), under its server span, under our span
    own = owner_spans(program, trace_id)
    server = next(s for s in own if s["kind"] == "server")
    assert (server["parent_id"], server["service"]) == (parent, "query")
    calls = {s["attributes"]["peer.service"]: s for s in own if s["kind"] == "client"}
    assert {name: s["span_id"] for name, s in calls.items()} == callers
    assert len(set(callers.values())) == 3, "a new span id for each call"
    assert all(s["parent_id"] == server["span_id"] for s in calls.values())
    assert calls["products"]["start"] >= max(
        calls[name]["start"] + calls[name]["duration_ms"] / 1000 for name in ("users", "orders")
    ) - 0.001, "products is the second stage"


def test_replicated_trace_names_only_its_own_file(impl: Implementation,
                                                  seeded: tuple[Sandbox, Reference]) -> None:
    _, program = seeded
    trace_id = new_trace_id()
    status, _ = program.get("/user-orders/2",
                            {"traceparent": f"00-{trace_id}-{new_span_id()}-01"})
    assert status == 200
    read = [s for s in owner_spans(program, trace_id) if "db.system" in s["attributes"]]
    assert [s["attributes"]["db.name"] for s in read] == [impl.model_file]
    assert all(s["kind"] != "client" for s in owner_spans(program, trace_id))


def test_its_spans_are_the_owners_only(seeded: tuple[Sandbox, Reference]) -> None:
    _, program = seeded
    status, error = program.get(f"/spans?trace_id={new_trace_id()}")
    assert status == 401 and error["service"] == "query"
    status, error = program.get(f"/spans?trace_id={new_trace_id()}",
                                {"authorization": "Bearer not-the-token"})
    assert status == 403
    query_credential = service_credential(program.sandbox.state.token, "query")
    status, error = program.get(f"/spans?trace_id={new_trace_id()}",
                                {"authorization": f"Bearer {query_credential}"})
    assert status == 403


def owner_spans(program: Reference, trace_id: str) -> list[dict[str, Any]]:
    status, found = program.get(f"/spans?trace_id={trace_id}",
                                {"authorization": f"Bearer {program.sandbox.state.token}"})
    assert status == 200, found
    spans: list[dict[str, Any]] = found["spans"]
    return spans


def test_sigkill_mid_catch_up_resumes_and_applies_each_event_once(impl: Implementation,
                                                                  tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sandbox") as sandbox:
        seed(sandbox, users=500, products=50, orders=30_000)
        head = sandbox.client().bus_head()
        program = Reference(sandbox, tmp_path / "service-d", free_port(), command=impl.command)
        try:
            program.start()
            until(lambda: 0 < program.consumer()["position"] < head,
                  f"the {impl.name} program is part way through its catch-up", timeout=30)
            program.stop(signal.SIGKILL)
            stored, _ = impl.stored(program.data_dir)
            assert 0 < stored < head, (stored, head)
            program.start()
            consumer = program.caught_up(timeout=60)
            # it read on from the stored position: the events after it, each applied once
            assert consumer["applied"] == head - stored and consumer["dead_letters"] == 0
            assert f"from bus position {stored}" in program.log()
            assert assert_equals_monolith(program, ("replicated",)) == 500
        finally:
            program.stop()


def test_a_dependency_down_fails_direct_call_and_not_replicated(impl: Implementation,
                                                                tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sandbox") as sandbox:
        seed(sandbox, users=10, products=5, orders=50)
        with reference(sandbox, tmp_path / "service-d", impl.command) as program:
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
            # the bus down too: replicated answers from what it has, and says why it is not
            # current; the bus back, it reads on
            sandbox.run("kill", "bus", check=True)
            until(lambda: program.consumer()["bus_error"] is not None, "the bus is missed")
            status, answer = program.get("/user-orders/2?strategy=replicated")
            assert status == 200 and answer["orders"] == truth
            assert answer["freshness"]["caught_up"] is False
            sandbox.run("start", "bus", check=True)
            sandbox.run("start", "products", check=True)
            order, _ = sandbox.client().buy(2, 1, wait_published_ms=5000)
            event = order.get("event")
            assert event is not None and event["position"] is not None
            status, answer = program.get(f"/user-orders/2?after={event['position']}"
                                         "&wait_ms=10000")
            assert status == 200 and answer["freshness"]["bus_error"] is None, answer
            assert order["id"] in [o["order_id"] for o in answer["orders"]]
            # SIGTERM, even with a long-poll of the bus open: it stops at once, cleanly
            started = time.monotonic()
            program.stop()
            assert program.process is not None and program.process.returncode == 0
            assert time.monotonic() - started < 2, program.log()


def test_run_by_msshop_as_the_query_service_it_passes_verify_and_compare(
        impl: Implementation, tmp_path: Path) -> None:
    """The two halves joined: `msshop up` runs the program as Service D (the supervisor's
    executable kind, the contract's service.json), and msshop's own checks hold it to the
    monolith: verify over every user, compare for one, both strategies."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_QUERY_COMMAND=impl.shell_command()
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
        asked = json.loads(direct.stdout)
        answer = asked["answer"]
        assert answer["strategy"] == "direct-call" and answer["user"]["id"] == 7
        # the trace: the program's own spans (it serves GET /spans in our format) and the
        # callees', joined by the traceparent it forwards
        services = {span["service"] for span in asked["spans"]}
        assert {"cli", "query", "users", "orders", "products"} <= services, services


# -- on NATS JetStream: each program reads the stream itself, with no client library ------

NATS_NODES = [pytest.param(1, id="nats"), pytest.param(3, id="nats-3-nodes")]


def the_program_msshop_runs(sandbox: Sandbox) -> Reference:
    """The program msshop runs as the query service, to ask over HTTP (not started here)."""
    query = sandbox.state.services["query"]
    return Reference(sandbox, Path(query.db), query.port)


def door_of(sandbox: Sandbox) -> str:
    """The address of the bus's door for the query service (what service.json names)."""
    doors = sandbox.state.services["bus-door"].doors
    assert doors is not None
    return f"nats://127.0.0.1:{doors['query']}"


@pytest.mark.parametrize("nodes", NATS_NODES)
def test_on_nats_it_equals_the_monolith_and_resumes_after_sigkill(
        impl: Implementation, nodes: int, tmp_path: Path) -> None:
    """`msshop up --bus nats` (one node, or three) with the reference as Service D: it reads
    the stream with the NATS text protocol on a socket (a pull consumer of its own from its
    stored position + 1), signed in as the user service.json names, which may only read.
    verify and read-your-writes hold; SIGKILL part way through a catch-up, then a start:
    it reads on from its stored position, each event applied once. Three nodes: the node it
    reads from killed, it reads on from the next server."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND="nats",
                         MSSHOP_BUS_NODES=str(nodes),
                         MSSHOP_QUERY_COMMAND=impl.shell_command()) as sandbox:
        program = the_program_msshop_runs(sandbox)
        given = (program.data_dir / "service.json").read_bytes()
        bus = msgspec.json.decode(given, type=ServiceFile)["bus"]
        state = sandbox.state
        # its one server is its door (services/bus_door), in front of every node
        assert bus == {"backend": "nats", "servers": [door_of(sandbox)],
                       "stream": state.bus.stream, "subjects": f"msshop.{state.bus.sandbox}.>",
                       "user": "query", "password": service_credential(state.token, "query")}
        assert len(state.bus.servers) == nodes
        # nothing published yet, so no stream (the writers make it with the first event,
        # and a reader may not): an empty log, caught up, not an error
        until(lambda: program.consumer()["listening"], "it has read the empty log")
        assert sandbox.run("wait", "--for", "caught-up", "--timeout", "10").returncode == 0
        assert program.consumer()["bus_error"] is None
        sandbox.run("seed", "--users", "60", "--products", "15", "--orders", "400", "--wait",
                    check=True)
        verified = sandbox.run("verify", check=True)
        assert "equals the monolith join for all 60 users" in verified.stdout
        compared = sandbox.run("compare", "--user", "7", "--json", check=True)
        rows = json.loads(compared.stdout)["strategies"]
        assert len(rows) >= 3 and all(row["equal"] and not row["error"] for row in rows), rows
        assert_reads_its_own_write(sandbox, program, user=7)

        sandbox.run("stop", "query", check=True)
        sandbox.run("seed", "--users", "500", "--products", "50", "--orders", "30000",
                    check=True, timeout=180)
        # every event on the bus before it starts: a catch-up of all of them, not one that
        # keeps pace with the relays still sending the seed's last batches
        until(lambda: all(sandbox.client().health(name)["outbox"]["pending"] == 0
                          for name in ("users", "products", "orders")),
              "the seed's events are all on the bus", timeout=60)
        sandbox.run("start", "query", check=True)

        def catching_up() -> bool:
            consumer = program.consumer()
            return consumer["position"] > 0 and consumer["catching_up_to"] is not None

        until(catching_up, f"the {impl.name} program is part way through its catch-up",
              timeout=30)
        sandbox.run("kill", "query", check=True)
        stored, _ = impl.stored(program.data_dir)
        assert 0 < stored < sandbox.client().bus_head(), stored
        sandbox.run("start", "query", check=True)
        caught_up(sandbox.client(), timeout=90)
        head, consumer = sandbox.client().bus_head(), program.consumer()
        assert consumer["applied"] == head - stored and consumer["dead_letters"] == 0
        log = Path(sandbox.state.services["query"].log).read_text()
        assert f"from bus position {stored}" in log
        verified = sandbox.run("verify", check=True)
        assert "equals the monolith join for all 500 users" in verified.stdout

        if nodes == 3:  # the first server, which it reads from: it reads on from another
            sandbox.run("kill", "bus", check=True)
            assert_reads_its_own_write(sandbox, program, user=9, timeout=30)
        else:  # its only server killed: it says so, and reads on once it is back
            sandbox.run("kill", "bus", check=True)
            until(lambda: program.consumer()["bus_error"] is not None, "the bus is missed")
            sandbox.run("start", "bus", check=True)
            assert_reads_its_own_write(sandbox, program, user=9, timeout=30)
        assert program.consumer()["bus_error"] is None
        # SIGTERM with a fetch open on the stream: it stops cleanly within the stop
        # timeout (its last word is its own; SIGKILL would have cut it off)
        started = time.monotonic()
        sandbox.run("stop", "query", check=True)
        assert time.monotonic() - started < 5
        assert Path(sandbox.state.services["query"].log).read_text().rstrip().endswith(
            "stopped")


def test_on_an_external_nats_server_it_reads_as_the_urls_user(
        impl: Implementation, tmp_path: Path, nats_server: str) -> None:  # noqa: F811
    """bus.url: a server msshop did not start. service.json names its servers, the
    sandbox's stream and subjects, and the URL's user and password (every part signs in
    with them; that server's owner decides what they may do): it reads the stream."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND="nats",
                         MSSHOP_BUS_URL=nats_server,
                         MSSHOP_QUERY_COMMAND=impl.shell_command()) as sandbox:
        program = the_program_msshop_runs(sandbox)
        given = (program.data_dir / "service.json").read_bytes()
        bus = msgspec.json.decode(given, type=ServiceFile)["bus"]
        state = sandbox.state
        assert state.bus.servers == [nats_server.replace("shop:s3cret@", "")]
        assert bus == {"backend": "nats", "servers": [door_of(sandbox)],  # in front of it
                       "stream": state.bus.stream, "subjects": f"msshop.{state.bus.sandbox}.>",
                       "user": "shop", "password": "s3cret"}
        sandbox.run("seed", "--users", "30", "--products", "10", "--orders", "200", "--wait",
                    check=True)
        verified = sandbox.run("verify", check=True)
        assert "equals the monolith join for all 30 users" in verified.stdout
        assert_reads_its_own_write(sandbox, program, user=4)


def test_on_nats_a_wrong_password_is_one_line_in_its_health_and_nothing_stops(
        impl: Implementation, tmp_path: Path) -> None:
    """service.json's NATS password wrong (a credential edited by hand, or of another
    sandbox): the server refuses the sign-in; the program says why in /health's bus_error,
    retries, and still answers direct-call."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND="nats") as sandbox:
        one_purchase(sandbox)
        program = WrongPassword(sandbox, tmp_path / "service-d", free_port(),
                                command=impl.command)
        try:
            program.start()
            until(lambda: program.consumer()["bus_error"] is not None, "the refusal is seen")
            consumer = program.consumer()
            assert "Authorization Violation" in consumer["bus_error"], consumer
            assert consumer["caught_up"] is False and consumer["position"] == 0
            status, answer = program.get("/user-orders/1?strategy=direct-call")
            assert status == 200 and len(answer["orders"]) == 1
            assert "Traceback" not in program.log() and WRONG not in program.log()
        finally:
            program.stop()


WRONG = "not-the-credential-7f3a"  # never in a log


@dataclass
class WrongPassword(Reference):
    """The program beside a NATS sandbox, given the query user with a wrong password."""

    def write_service_file(self) -> Path:
        path = super().write_service_file()
        document = json.loads(path.read_text())
        bus = self.sandbox.state.bus
        document["bus"] = {"backend": "nats", "servers": bus.servers, "stream": bus.stream,
                           "subjects": f"msshop.{bus.sandbox}.>", "user": "query",
                           "password": WRONG}
        path.write_text(json.dumps(document))
        return path


def assert_reads_its_own_write(sandbox: Sandbox, program: Reference, user: int,
                               timeout: float = 5) -> None:
    """A purchase, published on the bus within `timeout` (10 s at least), then its answer
    with after= its position, asked until `timeout`. The purchase is asked again by its
    request id while its event waits in the outbox: a NATS node just killed, the relay
    waits out the election of the stream's next leader, longer on a busy machine."""
    request_id = uuid.uuid4().hex
    deadline = time.monotonic() + max(timeout, 10)
    while True:
        order, _ = sandbox.client().buy(user, 2, request_id=request_id,
                                        wait_published_ms=10_000)
        event = order.get("event")
        if event is not None and event["position"] is not None:
            break
        assert time.monotonic() < deadline, order
    asked = f"/user-orders/{user}?after={event['position']}&wait_ms=2000"
    until(lambda: program.get(asked)[0] == 200, f"it applies position {event['position']}",
          timeout)
    status, answer = program.get(asked)
    assert status == 200, answer
    assert order["id"] in [line["order_id"] for line in answer["orders"]]


def test_on_nats_its_user_may_read_and_nothing_more(tmp_path: Path) -> None:
    """The credential in service.json signs in to NATS as a reader only: publishing an
    event, or deleting the stream, is refused by the server (nats-py, a client that is not
    the program's, tries); nothing reaches the stream."""
    import asyncio

    import nats

    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND="nats",
                         MSSHOP_QUERY_COMMAND=PYTHON.shell_command()) as sandbox:
        one_purchase(sandbox)
        program = the_program_msshop_runs(sandbox)
        bus = json.loads((program.data_dir / "service.json").read_text())["bus"]
        head = sandbox.client().bus_head()
        refused: list[str] = []

        async def trespass() -> None:
            async def error(exc: Exception) -> None:
                refused.append(str(exc))

            nc = await nats.connect(bus["servers"], user=bus["user"], password=bus["password"],
                                    inbox_prefix=f"_INBOX.{bus['user']}".encode(),
                                    error_cb=error,
                                    allow_reconnect=False)
            try:
                event = {"id": "x", "type": "UserSignedUp", "source": "users"}
                await nc.publish(bus["subjects"].replace(">", "users.UserSignedUp"),
                                 json.dumps(event).encode())
                with contextlib.suppress(Exception):  # refused: no answer comes
                    await nc.request(f"$JS.API.STREAM.DELETE.{bus['stream']}", b"",
                                     timeout=1)
                await nc.flush()
            finally:
                await nc.close()

        asyncio.run(trespass())
        assert sorted(refused) == sorted(
            f'nats: permissions violation for publish to "{subject}"'.lower() for subject in (
                bus["subjects"].replace(">", "users.UserSignedUp"),
                f"$JS.API.STREAM.DELETE.{bus['stream']}")), refused
        assert sandbox.client().bus_head() == head
        assert the_program_msshop_runs(sandbox).consumer()["position"] == head


# -- msshop trespass on a program of your own ---------------------------------------------

TRESPASS_HOW = {"python": "sqlite", "node": "open"}  # each program's way, when not told


def kernel_holds_the_rule(sandbox: Sandbox) -> bool:
    """Whether msshop has the kernel hold the isolation rule in this sandbox (Landlock:
    msshop's services say so in /health's "isolation"). Where it does not, nothing stops a
    program of your own from reading another service's file, and msshop says so."""
    return sandbox.client().health("users").get("isolation") == "kernel"


def test_trespass_asks_it_to_try_and_what_happened_shows_everywhere(
        impl: Implementation, tmp_path: Path) -> None:
    """`msshop trespass query --into users` with the reference as the query service: the
    program is asked (POST /chaos/trespass, the owner's token, users' file where the state
    says it is) to open and read it as a bug would; the CLI, its log, /health and `status`
    say what happened. Without a kernel rule it reads the file: the CLI reports the rule
    broken (exit 1). Nothing of the sandbox is harmed."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_QUERY_COMMAND=impl.shell_command()
                         ) as sandbox:
        sandbox.run("seed", "--users", "10", "--products", "5", "--orders", "40", "--wait",
                    check=True)
        state = sandbox.state
        result = sandbox.run("trespass", "query", "--into", "users", "--json")
        answer = json.loads(result.stdout)
        assert (answer["service"], answer["into"], answer["tried"], answer["how"]) == (
            "query", "users", state.services["users"].db, TRESPASS_HOW[impl.name])
        log = Path(state.services["query"].log).read_text()
        status = sandbox.run("status", check=True).stdout
        (told,) = [s["trespass"] for s in sandbox.status()["services"] if s["name"] == "query"]
        assert told["tried"] == 1 and told["last"]["tried"] == state.services["users"].db
        if answer["held"]:  # the kernel refused: checked where msshop applies Landlock
            assert result.returncode == 0 and answer["refused"], result
            assert told["refused"] == 1 and told["last"]["error"] == answer["refused"]
            assert f"tried to read users's file {answer['tried']}" in log
            assert "query's last trespass, into users: refused" in status
        else:
            assert not kernel_holds_the_rule(sandbox), "the kernel rule let it read the file"
            assert result.returncode == 1 and answer["refused"] == ""
            assert "error: query opened and read users's file" in result.stderr
            assert "the isolation rule did not hold" in result.stderr
            assert f"read users's file {answer['tried']} ({answer['how']}) and nothing " \
                   "refused it" in log
            assert told["refused"] == 0 and told["last"]["error"] is None
            assert "query's last trespass, into users: it read the file" in status
        # one try, one line in its log; the shop is whole
        assert log.count("trespass, on purpose") == 1
        assert "equals the monolith join for all 10 users" in sandbox.run(
            "verify", check=True).stdout


def test_a_trespass_it_is_refused_is_answered_logged_and_counted(
        seeded: tuple[Sandbox, Reference]) -> None:
    """POST /chaos/trespass as the contract says, with a path the operating system refuses
    to read as a file anywhere (a directory): each program answers refused, with the OS's
    words, logs one line and counts it in /health. Without the owner's token, or with a
    body of another shape, it refuses, and the connection goes on (the body was read)."""
    sandbox, program = seeded
    token = {"authorization": f"Bearer {sandbox.state.token}",
             "content-type": "application/json"}
    before = program.get("/health")[1]["trespass"]
    conn = http.client.HTTPConnection("127.0.0.1", program.port, timeout=10)
    try:
        def post(body: Any, headers: dict[str, str]) -> tuple[int, Any]:
            conn.request("POST", "/chaos/trespass", body=json.dumps(body), headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read())

        asked = {"into": "users", "path": str(program.data_dir)}
        assert post(asked, {})[0] == 401
        assert post(asked, {"authorization": "Bearer not-the-token"})[0] == 403
        wrongs: list[Any] = [[], {"into": "users", "path": "users.db"},
                             {**asked, "how": "ctypes"}]
        for wrong in wrongs:
            status, error = post(wrong, token)
            assert status == 422 and error["service"] == "query", (wrong, error)
        status, answer = post(asked, token)  # the same connection all along
    finally:
        conn.close()
    assert status == 200 and answer["refused"] is True and answer["error"], answer
    assert (answer["service"], answer["into"], answer["tried"]) == (
        "query", "users", str(program.data_dir))
    told = program.get("/health")[1]["trespass"]
    assert (told["tried"], told["refused"]) == (before["tried"] + 1, before["refused"] + 1)
    assert told["last"] == answer
    assert f"tried to read users's file {program.data_dir}" in program.log()


def test_trespass_is_refused_by_the_kernel(impl: Implementation, tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sandbox", MSSHOP_QUERY_COMMAND=impl.shell_command()
                         ) as sandbox:
        if not kernel_holds_the_rule(sandbox):
            pytest.skip("msshop applies no kernel rule (Landlock) to its services here: "
                        "a program of your own's trespass is not refused")
        result = sandbox.run("trespass", "query", "--into", "orders", "--json")
        answer = json.loads(result.stdout)
        assert result.returncode == 0 and answer["held"] is True, result
        assert "ermission denied" in answer["refused"] or "EACCES" in answer["refused"] \
            or "unable to open" in answer["refused"], answer


def test_trespass_on_a_program_that_does_not_serve_it_says_so(tmp_path: Path) -> None:
    """A program of your own with no POST /chaos/trespass (http.server answers 501): one
    line naming the program and the page that says how."""
    program = tmp_path / "bare.py"
    program.write_text(BARE_PROGRAM)
    with running_sandbox(tmp_path / "sandbox",
                         MSSHOP_QUERY_COMMAND=f"{sys.executable} {program}") as sandbox:
        result = sandbox.run("trespass", "query", "--into", "users")
        assert result.returncode != 0
        assert result.stderr.strip() == (
            "error: query is your program; it does not serve POST /chaos/trespass: see "
            "docs/protocol.md"), result.stderr
        wrong = sandbox.run("trespass", "query", "--into", "query")
        assert wrong.returncode == 2 and "--into 'query': name another service" in wrong.stderr


# a program that serves /health only: http.server answers anything else 501
BARE_PROGRAM = """
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"service": "query", "status": "ok", "pid": os.getpid()}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

HTTPServer((os.environ["MSSHOP_HOST"], int(os.environ["MSSHOP_PORT"])), Health).serve_forever()
"""


# -- the Python program only ----------------------------------------------------------------


def test_it_imports_only_the_standard_library() -> None:
    tree = ast.parse(PROGRAM.read_text())
    imported = {alias.name.partition(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.partition(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - {"__future__"} <= sys.stdlib_module_names, imported


def load_program() -> Any:
    """The reference program as a module, to try its apply on its own."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("service_d", PROGRAM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("service_d", module)  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_duplicates_and_out_of_order_events_change_nothing(tmp_path: Path) -> None:
    service_d = load_program()

    def event(kind: str, source: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
        return {"type": kind, "source": source, "aggregate_id": data["id"],
                "aggregate_version": version, "data": data}

    stream = [
        event("UserSignedUp", "users", 1, {"id": 1, "name": "Ann", "email": "a@x"}),
        event("ProductCreated", "products", 1, {"id": 7, "title": "Hat", "price": 5}),
        event("OrderPlaced", "orders", 1, {"id": 3, "user_id": 1, "product_id": 7,
                                           "quantity": 2, "unit_price": 5}),
        event("ProductUpdated", "products", 2, {"id": 7, "title": "Cap", "price": 6}),
    ]

    def answer(events: list[dict[str, Any]], name: str) -> Any:
        path = tmp_path / f"{name}.db"
        conn = service_d.open_db(path)
        conn.executescript(service_d.SCHEMA)
        for item in events:
            service_d.apply_event(conn, item)
        return service_d.ReadModel(path).user_orders(1)

    in_order = answer(stream, "in-order")
    assert in_order[1][0]["title"] == "Cap"
    assert answer([*stream, *stream], "twice") == in_order
    assert answer(list(reversed(stream)), "reversed") == in_order


def test_a_page_with_bad_events_applies_the_rest_and_dead_letters_each(tmp_path: Path
                                                                       ) -> None:
    service_d = load_program()
    settings = service_d.Settings({
        "service": "query", "host": "127.0.0.1", "port": 1, "data_dir": str(tmp_path),
        "peers": {"bus": "http://127.0.0.1:1"}, "credential": "c", "owner_digest": "d",
        "bus": {"backend": "log", "url": "http://127.0.0.1:1"}})
    consumer = service_d.Consumer(settings, tmp_path / "read.db")
    user = {"type": "UserSignedUp", "source": "users", "aggregate_id": 1,
            "aggregate_version": 1, "data": {"id": 1, "name": "Ann", "email": "a@x"}}
    page = [
        {"position": 1, "event": user},
        {"position": 2, "event": {**user, "aggregate_version": 2**70}},  # beyond SQLite
        {"position": 3, "event": {**user, "source": "orders"}},  # not its owner
        {"position": 4, "event": "not an object"},
        {"position": 5, "event": {**user, "type": "UserRenamed"}},  # unknown
        {"position": 6, "event": {"type": "OrderPlaced", "source": "orders",
                                  "aggregate_id": 9, "aggregate_version": 1, "data": {
                                      "id": 9, "user_id": 1, "product_id": 2,
                                      "quantity": 1, "unit_price": 2.5}}},
    ]
    consumer.apply_page(page)
    assert (consumer.position, consumer.applied, consumer.dead) == (6, 2, 4)
    reasons = dict(consumer.conn.execute("SELECT position, reason FROM dead_letters"))
    assert sorted(reasons) == [2, 3, 4, 5]
    assert "comes only from users" in reasons[3] and "unknown event type" in reasons[5]
    user_found, orders = service_d.ReadModel(tmp_path / "read.db").user_orders(1)
    assert user_found == {"id": 1, "name": "Ann", "email": "a@x"}
    assert orders == [{"order_id": 9, "product_id": 2, "title": None, "quantity": 1,
                       "unit_price": 2.5, "total": 2.5, "status": "confirmed",
                       "reason": None}]


# -- the Node program only ------------------------------------------------------------------


@NO_NODE
def test_a_damaged_read_model_file_stops_it_with_one_line(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sandbox") as sandbox:
        program = Reference(sandbox, tmp_path / "service-d", free_port(), command=NODE.command)
        program.data_dir.mkdir(parents=True)
        (program.data_dir / "query-replica.json").write_text('{"position": 12, "us')
        with pytest.raises(AssertionError, match="exited 2") as raised:
            program.start()
        assert "cannot read the read model" in str(raised.value)
        assert "delete that file" in str(raised.value) and "Traceback" not in str(raised.value)


# -- faults on a program of your own, run by msshop (each implementation) -----------------
#
# It has no /chaos and no msshop code in it: the process faults are signals to its process
# group, the faults on its calls are kept at the doors its callees listen on for it (the
# URLs its service.json gives), and the bus hands it events again by its credential.

PARTITION_USERS = ("chaos: query cannot reach users (a partition on purpose); clear it "
                   "with: msshop chaos query --to users --clear")
PARTITION_BUS = ("chaos: query cannot reach bus (a partition on purpose); clear it with: "
                 "msshop chaos query --to bus --clear")
EXPERIMENT_SECONDS = "3"  # as tests/e2e/test_experiments.py: each fault lasts 1.5 s


@pytest.fixture(scope="module")
def run_by_msshop(impl: Implementation, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Sandbox]:
    """A sandbox whose query service is the program, started by `msshop up`, seeded."""
    root = tmp_path_factory.mktemp(f"faults-{impl.name}")
    with running_sandbox(root / "sandbox", MSSHOP_QUERY_COMMAND=impl.shell_command()
                         ) as sandbox:
        sandbox.run("seed", "--users", "20", "--products", "8", "--orders", "100", "--wait",
                    check=True)
        yield sandbox


def program_consumer(sandbox: Sandbox) -> dict[str, Any]:
    found: dict[str, Any] = sandbox.client().request("query", "GET", "/health")["consumer"]
    return found


def direct_call(sandbox: Sandbox, user_id: int) -> tuple[int, Any]:
    return sandbox.client().exchange("query", "GET",
                                     f"/user-orders/{user_id}?strategy=direct-call")


def test_faults_on_its_calls_are_applied_at_the_doors_it_is_given(
        run_by_msshop: Sandbox) -> None:
    sandbox = run_by_msshop
    state = sandbox.state
    doors = {name: s.doors["query"] for name, s in state.services.items()
             if s.doors and "query" in s.doors}
    assert sorted(doors) == ["bus", "orders", "products", "users"]
    document = json.loads((Path(state.services["query"].db) / "service.json").read_text())
    assert document["peers"] == {name: f"http://127.0.0.1:{port}"
                                 for name, port in doors.items()}, "its peers are its doors"
    assert all(port != state.services[name].port for name, port in doors.items())
    listed = {s["name"]: s.get("doors") for s in sandbox.status()["services"]}
    assert listed["users"] == {"query": doors["users"]} and listed["query"] is None

    said = sandbox.run("chaos", "query", "--to", "users", "--error-rate", "1", check=True,
                       env_extra={"COLUMNS": "80"}).stdout
    assert said.splitlines() == ["query -> users: every call fails (a partition)",
                                 "clear with: msshop chaos query --to users --clear"]
    status, error = direct_call(sandbox, 1)
    assert (status, error["dependency"], error["service"]) == (503, "users", "query"), error
    assert PARTITION_USERS in error["error"], error
    truth = all_user_orders(databases(state))[1]
    status, answer = sandbox.client().exchange("query", "GET", "/user-orders/1")
    assert status == 200 and answer["orders"] == truth, "replicated needs no one"
    sandbox.client().buy(2, 3)  # orders is ours: it reaches users on users' own port
    shown = sandbox.run("status", check=True, env_extra={"COLUMNS": "80"}).stdout
    assert "chaos on query -> users: every call fails (a partition)" in shown
    assert "chaos in users" not in shown, "users answers everyone else as before"

    sandbox.run("chaos", "query", "--to", "users", "--clear", check=True)
    sandbox.run("chaos", "query", "--to", "products", "--latency", "300", check=True)
    started = time.monotonic()
    status, answer = direct_call(sandbox, 1)
    assert status == 200 and answer["orders"] == truth
    assert time.monotonic() - started >= 0.3, "its call to products waited at the door"
    cleared = json.loads(sandbox.run("chaos", "query", "--clear", "--json",
                                     check=True).stdout)
    assert cleared == {"service": "query", "chaos": None, "links": {}}
    started = time.monotonic()
    assert direct_call(sandbox, 1)[0] == 200 and time.monotonic() - started < 0.3

    refused = sandbox.run("chaos", "query", "--latency", "100")
    assert refused.returncode == 2 and refused.stderr.splitlines() == [
        "error: query is a program of your own, which cannot take chaos (only msshop's "
        "services do); stop, start or kill it instead (msshop kill query)"], \
        "the requests it answers take none: it serves no /chaos"
    for callee, body, says in [
        ("users", {"caller": "orders", "error_rate": 1}, "caller 'orders': name a program of "
         "your own that calls users through a door (query)"),
        ("users", {"caller": "query", "to": "bus"}, "give caller or to, not both"),
        ("users", {"caller": "query", "duplicate_rate": 0.5}, "give it to the bus"),
        ("bus", {"caller": "query", "error_rate": 2}, "error_rate 2.0 must be from 0 to 1"),
        ("bus", {"caller": 5}, "invalid request body: Expected `str | null`, got `int`")]:
        status, answer = sandbox.client().exchange(callee, "POST", "/chaos", body,
                                                   headers=bearer(state.token))
        assert (status, answer["status"], answer["service"]) == (422, 422, callee), answer
        assert says in answer["error"], (body, answer)
    status, _ = sandbox.client().exchange("users", "POST", "/chaos",
                                          {"caller": "query", "error_rate": 1})
    assert status == 401, "the owner's token, as for any fault"
    assert sandbox.client().request("users", "GET", "/health")["chaos"] is None, \
        "nothing refused was applied"


def test_a_door_taken_by_another_program_is_named_and_its_callee_starts_once_freed(
        run_by_msshop: Sandbox) -> None:
    sandbox = run_by_msshop
    sandbox.run("stop", "users", check=True)
    doors = sandbox.state.services["users"].doors
    assert doors is not None
    try:
        with socket.socket() as squatter:  # as msshop binds: a closed connection's
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT
            squatter.bind(("127.0.0.1", doors["query"]))  # does not count, a listener does
            squatter.listen()
            refused = sandbox.run("start", "users")
            assert refused.returncode == 1 and refused.stderr.splitlines() == [
                f"error: port {doors['query']} for users (the door for query's calls) is "
                "taken by another program; free it and run the command again (a running "
                "sandbox keeps its ports; msshop down, then up, picks them again)"
            ], refused.stderr
    finally:  # the module's sandbox goes on with users running
        sandbox.run("start", "users", check=True)
    assert sandbox.state.services["users"].doors == doors, "the same door, as its URL says"
    until(lambda: direct_call(sandbox, 1)[0] == 200, "query reaches users at its door")


def test_the_bus_partitions_it_and_hands_it_events_again_by_its_credential(
        run_by_msshop: Sandbox) -> None:
    sandbox = run_by_msshop
    client = sandbox.client()
    sandbox.run("chaos", "query", "--to", "bus", "--error-rate", "1", check=True)
    # a long-poll it opened before the cut brings one more append; the next read meets it
    client.buy(4, 1, wait_published_ms=2000)
    until(lambda: program_consumer(sandbox)["bus_error"] is not None, "the bus is cut off")
    assert PARTITION_BUS in program_consumer(sandbox)["bus_error"]
    order, _ = client.buy(4, 2, wait_published_ms=2000)
    answer = client.request("query", "GET", "/user-orders/4")
    assert answer["freshness"]["caught_up"] is False, "served from its copy, stale"
    assert order["id"] not in [o["order_id"] for o in answer["orders"]]
    sandbox.run("chaos", "query", "--to", "bus", "--clear", check=True)
    caught_up(client, timeout=30)
    answer = client.request("query", "GET", "/user-orders/4")
    assert order["id"] in [o["order_id"] for o in answer["orders"]]

    said = sandbox.run("chaos", "query", "--to", "bus", "--duplicate-rate", "0.5",
                       check=True).stdout
    assert said.startswith("query -> bus: 50% of the events read handed over again")
    before, head = program_consumer(sandbox)["applied"], client.bus_head()
    for n in range(30):  # one at a time: small pages, each with earlier events mixed in
        client.request("orders", "POST", "/orders", {
            "user_id": 1 + n % 20, "product_id": 1 + n % 8, "request_id": f"again-{n}"})
    at = caught_up(client, timeout=30)
    handed = program_consumer(sandbox)["applied"] - before
    assert handed > (at.position - head) * 1.2, "events were handed to it again"
    bus = next(s for s in sandbox.status()["services"] if s["name"] == "bus")
    assert bus["chaos"]["doors"]["query"]["duplicate_rate"] == 0.5
    sandbox.run("chaos", "query", "--clear", check=True)
    verified = sandbox.run("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    ids = [o["order_id"] for user in range(1, 21)
           for o in client.request("query", "GET", f"/user-orders/{user}")["orders"]]
    assert len(ids) == len(set(ids)), "each order once"
    assert program_consumer(sandbox)["dead_letters"] == 0


def test_it_is_paused_stopped_and_killed_as_a_process_group(run_by_msshop: Sandbox) -> None:
    from msshop.contracts.config import load
    from msshop.instruments.experiments.nemesis import Nemesis
    from msshop.instruments.experiments.scenario import Fault

    sandbox = run_by_msshop
    nemesis = Nemesis(load(overrides={"sandbox.dir": sandbox.root}))
    pid = sandbox.state.services["query"].pid
    assert pid is not None and os.getpgid(pid) == pid, "it leads a process group of its own"
    pause = Fault("pause", "query", 0, 1)
    nemesis.apply(pause)
    try:
        until(lambda: Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "T",
              "the kernel has stopped it (SIGSTOP is delivered asynchronously)")
        query = next(s for s in sandbox.status()["services"] if s["name"] == "query")
        assert (query["status"], query["health"]) == ("running", "not answering")
    finally:
        nemesis.heal(pause)
    until(lambda: direct_call(sandbox, 2)[0] == 200, "it answers again once thawed")
    for kind, exit_word in (("stop", "stopped"), ("kill", "crashed")):
        fault = Fault(kind, "query", 0, 1)
        nemesis.apply(fault)
        assert sandbox.state.services["query"].status == exit_word
        nemesis.heal(fault)
        assert sandbox.state.services["query"].status == "running"
        assert direct_call(sandbox, 2)[0] == 200
    caught_up(sandbox.client(), timeout=30)


@pytest.mark.parametrize("name", ["products-outage", "bus-outage", "duplicates",
                                  "query-crash"])
def test_the_experiments_end_as_they_do_with_ours(run_by_msshop: Sandbox, name: str,
                                                  tmp_path: Path) -> None:
    sandbox = run_by_msshop
    result = sandbox.run("experiment", name, "--seconds", EXPERIMENT_SECONDS, "--json",
                         "--sandbox", str(sandbox.root), env_extra={"TMPDIR": str(tmp_path)},
                         timeout=120)
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    outcome = report["outcome"]
    assert result.returncode == 0 and outcome["verdict"] == "valid", outcome
    assert outcome["problems"] == [] and outcome["checked"]["confirmed"] > 0
    assert outcome["checked"]["replicated"] == outcome["checked"]["confirmed"]
    during = report["during_faults"]
    if name == "products-outage":
        assert during["direct-call"]["availability"] <= 0.4, "answers only at the edges"
        assert during["replicated"]["availability"] == 1.0
    elif name == "bus-outage":
        assert during["replicated"]["availability"] == 1.0
        assert during["direct-call"]["availability"] == 1.0, "it never uses the bus"
        assert report["staleness"]["max"] > 500, "a purchase in the fault waits for the heal"
    elif name == "query-crash":
        assert during["replicated"]["availability"] < 1.0
        assert during["direct-call"]["availability"] < 1.0
    assert all(s["status"] == "running" for s in sandbox.status()["services"])


def test_the_lesson_demo_runs_with_it(impl: Implementation, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = sandbox_env(tmp_path / "unused", TMPDIR=str(scratch), COLUMNS="80")
    result = msshop("demo", "lesson", "--no-pause", "--speed", "100", "--service",
                    f"query={impl.shell_command()}", env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ["breaks encapsulation", "products.db", "= monolith",
                 f"replicated touched query: {impl.model_file}",
                 "freshness: read model at bus position", "applied in the read model"]:
        assert line in result.stdout, line
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert result.stdout.rstrip().endswith("demo 'lesson' done: 9 steps, nothing left "
                                           "behind")
    assert list(scratch.iterdir()) == [], "the demo's temporary sandbox is removed"


def group_members(leader: int) -> set[int]:
    """The live processes of process group `leader` (Linux: /proc/<pid>/stat's pgrp)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                if int(fields[2]) == leader and fields[0] != "Z":
                    found.add(int(entry.name))
    return found


def test_a_program_with_children_is_killed_and_paused_whole(tmp_path: Path) -> None:
    """A shell that starts the program as its child: `msshop kill` and the nemesis's pause
    reach both (the whole process group), so no child is left holding the port."""
    from msshop.contracts.config import load
    from msshop.instruments.experiments.nemesis import Nemesis
    from msshop.instruments.experiments.scenario import Fault

    wrapped = f"sh -c '{sys.executable} {PROGRAM} & wait'"
    with running_sandbox(tmp_path / "sandbox", MSSHOP_QUERY_COMMAND=wrapped) as sandbox:
        leader = sandbox.state.services["query"].pid
        assert leader is not None
        members = group_members(leader)
        assert len(members) == 2, "the shell and the program it started"
        nemesis = Nemesis(load(overrides={"sandbox.dir": sandbox.root}))
        pause = Fault("pause", "query", 0, 1)
        nemesis.apply(pause)
        try:
            until(lambda: all(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2]
                              .split()[0] == "T" for pid in members), "both are stopped")
        finally:
            nemesis.heal(pause)
        sandbox.run("kill", "query", check=True)
        until(lambda: not group_members(leader), "the child is killed with the shell")
        sandbox.run("start", "query", check=True)  # its port is free: nobody holds it
        assert direct_call(sandbox, 1)[0] == 404, "it answers (no user 1 in an empty shop)"


def test_a_trespass_the_os_refuses_is_answered_and_counted(tmp_path: Path) -> None:
    """The refusal branch of the Python program's trespass, with a refusal the operating
    system gives anywhere (a directory is no database file, and cannot be read as one)."""
    service_d = load_program()
    trespasser = service_d.Trespasser("query")
    for how in ("sqlite", "open"):
        answer = trespasser.attempt({"into": "users", "path": str(tmp_path), "how": how})
        assert answer["refused"] is True and answer["error"], answer
    assert trespasser.health()["tried"] == trespasser.health()["refused"] == 2
    for body, words in (([], "send {"), ({"into": "users", "path": "rel.db"}, "absolute"),
                        ({"into": "Users!", "path": "/x"}, "name the service"),
                        ({"into": "users", "path": "/x", "how": "ctypes"}, "not one of")):
        with pytest.raises(service_d.HttpError, match=words):
            trespasser.attempt(body)
