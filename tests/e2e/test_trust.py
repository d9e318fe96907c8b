"""Issue 9, findings 1 to 3: who may write to the bus, whose event ids count as duplicates,
and a log that is lost or replaced. Each test tries the attack on a real sandbox and shows
it refused or detected."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from msshop.bus.interface import Bus, BusUnavailable
from msshop.bus.jetstream import JetStreamBus
from msshop.contracts import events
from msshop.contracts.credentials import bearer
from msshop.instruments.checking import caught_up
from tests.conftest import Sandbox, running_sandbox
from tests.unit.test_protocol import made_by_the_saga

B = TypeVar("B", bound=Bus)


def forged(source: str = "users", **changes: object) -> dict[str, object]:
    event = events.make(events.USER_SIGNED_UP, source, 4242, 999,
                        {"id": 4242, "email": "forged@example.com", "name": "Forged"}, None)
    return {**json.loads(events.encode(event)), **changes}


def test_only_the_writing_services_append_each_its_own_events(shared_sandbox: Sandbox
                                                              ) -> None:
    client = shared_sandbox.client()
    body = [forged()]
    for headers, status, says in [
        ({}, 401, "appending to the bus needs a service's credential"),
        (bearer("0" * 64), 403, "appending to the bus refused"),
        (bearer(shared_sandbox.state.token), 403, "appending to the bus refused"),
        (shared_sandbox.as_service("query"), 403, "query reads the bus; only services"),
        (shared_sandbox.as_service("orders"), 403,
         "event [0] says it comes from 'users', but orders sent it"),
    ]:
        answer = client.exchange("bus", "POST", "/events", body, headers)
        assert answer[0] == status and says in answer[1]["error"], (headers, answer)
    head = client.health("bus")["head"]
    assert client.health("bus")["head"] == head, "nothing was appended"
    appended = client.request("bus", "POST", "/events", body, shared_sandbox.as_service("users"))
    assert appended["appended"] == 1, "the users service itself may"


def test_the_logs_readers_and_the_owners_endpoints_need_a_credential(shared_sandbox: Sandbox
                                                                     ) -> None:
    client = shared_sandbox.client()
    for service, method, path in [("bus", "GET", "/events?after=0"),
                                  ("users", "GET", "/spans?trace_id=" + "a" * 32),
                                  ("query", "GET", "/dead-letters"),
                                  ("query", "GET", "/bench/lag?since=0"),
                                  ("query", "POST", "/replay"),
                                  ("orders", "POST", "/chaos")]:
        status, answer = client.exchange(service, method, path,
                                         {} if method == "POST" else None)
        assert status == 401, (service, path, answer)
        status, answer = client.exchange(service, method, path, {} if path == "/chaos" else None,
                                         bearer("f" * 32))
        assert status == 403, (service, path, answer)
    assert client.exchange("bus", "GET", "/events?after=0",
                           headers=bearer(shared_sandbox.state.token))[0] == 200
    assert shared_sandbox.run("events", "--limit", "1").returncode == 0


def test_an_event_id_taken_first_by_another_service_does_not_make_a_real_one_a_duplicate(
        shared_sandbox: Sandbox) -> None:
    """Squatting: append the id a service will use next, from another service. The bus
    de-duplicates per source, so the real event is still stored, at a position of its own."""
    client = shared_sandbox.client()
    real = events.make(events.USER_SIGNED_UP, "users", 5151, 1,
                       {"id": 5151, "email": "real@example.com", "name": "Real"}, None)
    squat = forged("products", id=real.id, type=events.PRODUCT_CREATED,
                   aggregate_type="product", data={"id": 4242, "title": "S", "price": 1.0})
    taken = client.request("bus", "POST", "/events", [squat],
                           shared_sandbox.as_service("products"))
    stored = client.request("bus", "POST", "/events", [json.loads(events.encode(real))],
                            shared_sandbox.as_service("users"))
    assert stored["appended"] == 1 and stored["positions"] != taken["positions"]
    again = client.request("bus", "POST", "/events", [json.loads(events.encode(real))],
                           shared_sandbox.as_service("users"))
    assert again["appended"] == 0 and again["positions"] == stored["positions"], \
        "a service's own repeat is still a duplicate"


def wait_for_log_problem(sandbox: Sandbox, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer = sandbox.client().health("query").get("consumer")
        if consumer and consumer["log_problem"]:
            return consumer["log_problem"]
        time.sleep(0.05)
    raise AssertionError("the query service did not notice the log changed")


@pytest.mark.parametrize("how", ["emptied", "replaced"])
def test_a_lost_or_replaced_log_is_named_never_caught_up(sandbox: Sandbox, how: str) -> None:
    sandbox.run("seed", "--users", "5", "--products", "3", "--orders", "20", check=True)
    caught_up(sandbox.client(), timeout=10)
    sandbox.run("stop", "bus", check=True)
    bus_db = sandbox.root / "data" / "bus" / "bus.db"
    if how == "emptied":
        for suffix in ("", "-wal", "-shm"):
            bus_db.with_name(bus_db.name + suffix).unlink(missing_ok=True)
    else:
        with sqlite3.connect(bus_db) as conn:  # the test plays someone swapping the file
            conn.execute("UPDATE log SET id = 'another-log-entirely'")
    sandbox.run("start", "bus", check=True)
    problem = wait_for_log_problem(sandbox)
    assert problem.endswith("rebuild it with: msshop replay query") or \
        problem.endswith("rebuild it from the new log with: msshop replay query")
    assert "replaced" in problem  # an emptied bus.db is a new log, with an identity of its own
    status = sandbox.run("status", check=True).stdout
    assert problem in status and "caught up" not in status.split("query: read model")[1]
    answer = sandbox.client().user_orders(1, "replicated")
    assert isinstance(answer, dict), answer
    fresh = answer["freshness"]
    assert "live" not in fresh and fresh["caught_up"] is False
    assert fresh["log_problem"] == problem
    replayed = sandbox.run("replay", "query", check=True).stdout
    assert replayed.startswith("rebuilt the read model from position 0")
    deadline = time.monotonic() + 10
    while sandbox.client().health("query")["consumer"]["log_problem"]:
        assert time.monotonic() < deadline, "the replay did not clear the problem"
        time.sleep(0.05)


def test_replay_counts_the_dead_letters_of_the_log_once(sandbox: Sandbox) -> None:
    client = sandbox.client()
    client.request("bus", "POST", "/events", [forged(type="UserVanished")],
                   sandbox.as_service("users"))
    deadline = time.monotonic() + 10
    while client.health("query")["consumer"]["dead_letters"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    replayed = sandbox.run("replay", "query", check=True).stdout
    assert replayed.rstrip().endswith(", 1 dead letter(s)"), replayed


def test_verify_sees_a_user_renamed_in_the_read_model(sandbox: Sandbox) -> None:
    """What a forged UserSignedUp would have done; verify used to compare orders only."""
    sandbox.run("seed", "--users", "3", "--products", "2", "--orders", "5", check=True)
    caught_up(sandbox.client(), timeout=10)
    assert sandbox.run("verify").returncode == 0
    query_db = sandbox.root / "data" / "query" / "query.db"
    with sqlite3.connect(query_db) as conn:  # the test forges it
        (name,) = conn.execute("SELECT name FROM users_replica WHERE id = 2").fetchone()
        conn.execute("UPDATE users_replica SET name = 'Mallory' WHERE id = 2")
    result = sandbox.run("verify")
    assert result.returncode == 1
    assert f"user 2: the user's name is 'Mallory', expected {name!r}" in result.stdout


# --- the same rules on NATS JetStream: the server's own accounts and permissions -----------


def nats_bus(sandbox: Sandbox, who: str, password: str | None = None) -> JetStreamBus:
    """The sandbox's nats bus as `who` signs in (with its own credential, or `password`)."""
    address = sandbox.state.bus.address(who, sandbox.state.token, timeout=0.5)
    if password is not None:
        address = replace(address, password=password)
    return JetStreamBus(address, f"test-{who}")


def refused(sandbox: Sandbox, who: str, attempt: Callable[[JetStreamBus], Awaitable[object]],
            password: str | None = None) -> str:
    """Try `attempt` as `who` on NATS; the bus must refuse it. Returns its words."""
    return refusal(who, lambda: nats_bus(sandbox, who, password), attempt)


def refusal(who: str, connect: Callable[[], B], attempt: Callable[[B], Awaitable[object]]
            ) -> str:
    """Try `attempt` on the bus `connect` makes (inside the loop); the bus must refuse it.
    Returns its words."""
    async def go() -> str:
        bus = connect()
        try:
            await attempt(bus)
        except BusUnavailable as exc:
            return exc.message
        finally:
            await bus.close()
        raise AssertionError(f"{who} was allowed")

    return asyncio.run(go())


def test_on_nats_each_part_may_do_only_its_own_part(shared_nats_sandbox: Sandbox) -> None:
    sandbox = shared_nats_sandbox
    one = [events.encode(events.make(events.USER_SIGNED_UP, "users", 4343, 1, {
        "id": 4343, "email": "n@example.com", "name": "N"}, None))]
    orders_event = [events.encode(events.make(events.ORDER_PLACED, "orders", 4343, 1, {
        "id": 4343}, None))]
    head = sandbox.client().bus_head()
    mine = f"msshop.{sandbox.state.bus.sandbox}"  # the sandbox's subjects (streams.py)
    # (nats-py lowers the server's words: "permissions violation for publish to …orderplaced")
    # nobody without the sandbox's secrets gets in
    said = refused(sandbox, "users", lambda bus: bus.head(), password="0" * 64)
    assert said.startswith("bus is down: cannot reach NATS at nats://127.0.0.1:")
    assert said.endswith(": authorization violation"), said
    # users may not append orders' events, query and the owner may append nothing
    said = refused(sandbox, "users", lambda bus: bus.append(orders_event))
    assert said == ('NATS refused the events: permissions violation for publish to '
                    f'"{mine}.orders.orderplaced"')
    said = refused(sandbox, "query", lambda bus: bus.append(one))
    assert said.endswith(f'permissions violation for publish to "{mine}.users.usersignedup"')
    said = refused(sandbox, "owner", lambda bus: bus.append(one))
    assert said.endswith(f'permissions violation for publish to "{mine}.users.usersignedup"')
    # a writing service reads the log too (issue 26: the saga's steps follow the bus)
    async def read_as_users() -> int:
        bus = nats_bus(sandbox, "users")
        try:
            return (await bus.read(0, 10)).head
        finally:
            await bus.close()

    assert asyncio.run(read_as_users()) == head
    assert sandbox.client().bus_head() == head, "nothing was appended"


def test_on_nats_a_lost_stream_is_named_never_caught_up(tmp_path: Path) -> None:
    """JetStream's store deleted while its server was down: the stream is made again on the
    next purchase, with an identity of its own, and the read model says it was built from
    another log (as with bus.db emptied)."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND="nats") as sandbox:
        sandbox.run("seed", "--users", "5", "--products", "3", "--orders", "20", check=True)
        caught_up(sandbox.client(), timeout=10)
        sandbox.run("stop", "bus", check=True)
        shutil.rmtree(sandbox.root / "data" / "nats" / "bus")
        sandbox.run("start", "bus", check=True)
        sandbox.run("buy", "--user", "1", "--product", "1", check=True)
        problem = wait_for_log_problem(sandbox)
        assert problem.startswith("the bus's log was replaced"), problem
        assert problem.endswith("msshop replay query")
        answer = sandbox.client().user_orders(1, "replicated")
        assert isinstance(answer, dict), answer
        fresh = answer["freshness"]
        assert "live" not in fresh and fresh["caught_up"] is False
        result = sandbox.run("replay", "query", check=True).stdout
        assert result.startswith("rebuilt the read model from position 0: 1 events"), result
        assert wait_for_no_log_problem(sandbox)


def wait_for_no_log_problem(sandbox: Sandbox, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer = sandbox.client().health("query").get("consumer")
        if consumer and not consumer["log_problem"]:
            return True
        time.sleep(0.05)
    return False


def test_on_nats_an_event_whose_source_is_not_its_sender_is_dead_lettered(
        shared_nats_sandbox: Sandbox) -> None:
    """The server lets orders publish only to its own subject, but what the body says is
    orders' to write: a client with orders' credential (not msshop's relay, which takes the
    subject from the source) sends a users event there. The subject names the sender, and
    the consumer refuses the event, as the log refuses it at the door."""
    import nats

    sandbox = shared_nats_sandbox
    address = sandbox.state.bus.address("orders", sandbox.state.token)
    body = json.dumps(forged(source="users", id="forged-by-orders")).encode()

    async def forge() -> int:
        nc = await nats.connect(list(address.servers), user=address.user,
                                password=address.password,
                                inbox_prefix=address.inbox.encode())
        try:
            # orders' own subject (streams.py): the server lets orders publish here
            ack = await nc.jetstream().publish(
                f"msshop.{sandbox.state.bus.sandbox}.orders.OrderPlaced", body,
                headers={"Nats-Msg-Id": "orders.forged"})
            return ack.seq
        finally:
            await nc.close()

    position = asyncio.run(forge())
    deadline = time.monotonic() + 10
    while True:
        letters = sandbox.client().dead_letters(100)["dead_letters"]
        found = [d for d in letters if d["position"] == position]
        if found:
            break
        assert time.monotonic() < deadline, "the forged event was not refused"
        time.sleep(0.05)
    assert found[0]["reason"] == "the event says it comes from 'users', but orders sent it"
    answer = sandbox.client().user_orders(4242, "replicated")
    assert not isinstance(answer, dict) or answer["user"] is None, "nothing was applied"


# --- issue 23, finding 3: each event type has one owner ------------------------------------

#: every event type and each writing service that does not own it
NOT_THE_OWNER = [(event_type, sender) for event_type, owner in events.OWNERS.items()
                 for sender in ("users", "products", "orders") if sender != owner]
HUGE = 2 ** 62  # the finding's version: it would win over every later real update


def foreign(event_type: str, sender: str, aggregate_id: int = 4747) -> events.Event:
    """An event of `event_type`, made and signed by `sender`, which does not own that type;
    valid data, a version that would win over everything."""
    samples: dict[str, dict[str, object]] = {
        events.USER_SIGNED_UP: {"id": aggregate_id, "email": "o@example.com", "name": "O"},
        events.PRODUCT_CREATED: {"id": aggregate_id, "title": "Owned", "price": 1.0},
        events.PRODUCT_UPDATED: {"id": aggregate_id, "title": "Owned", "price": 1.0},
        events.ORDER_PLACED: {"id": aggregate_id, "user_id": 1, "product_id": 1,
                              "quantity": 1, "unit_price": 1.0},
        **{e.type: e.data for e in made_by_the_saga()},
    }
    data = samples[event_type]
    return events.make(event_type, sender, aggregate_id, HUGE, data, None)


@pytest.fixture(params=["log", "nats"], scope="module")
def either_shared(request: pytest.FixtureRequest) -> Sandbox:
    """The module's shared sandbox on each backend (a fresh one per case would start 16)."""
    fixture = "shared_nats_sandbox" if request.param == "nats" else "shared_sandbox"
    sandbox: Sandbox = request.getfixturevalue(fixture)
    return sandbox


@pytest.mark.parametrize(("event_type", "sender"), NOT_THE_OWNER)
def test_a_service_may_not_append_a_type_another_service_owns(
        either_shared: Sandbox, event_type: str, sender: str) -> None:
    """The attack: a writing service's own credential, `source` = itself (so the sender
    check passes), a type it does not own. Refused at the bus, on both backends."""
    sandbox = either_shared
    head = sandbox.client().bus_head()
    said = refused_append(sandbox, sender, [events.encode(foreign(event_type, sender))])
    owner = events.OWNERS[event_type]
    if sandbox.backend == "log":
        assert said == (f"the bus refused the events: event [0]: a {event_type} comes only "
                        f"from {owner}, but {sender} sent it: a service appends only the "
                        "event types it owns"), said
    else:  # the server's permissions (nats-py lowers its words)
        subject = f"msshop.{sandbox.state.bus.sandbox}.{sender}.{event_type}".lower()
        assert said == f'NATS refused the events: permissions violation for publish to ' \
                       f'"{subject}"', said
    assert sandbox.client().bus_head() == head, "nothing was appended"


def refused_append(sandbox: Sandbox, sender: str, bodies: list[bytes]) -> str:
    def connect() -> Bus:
        # on NATS a refused publish is never confirmed: wait 0.5 s for it, not 10
        return (nats_bus(sandbox, sender) if sandbox.backend == "nats"
                else sandbox.client().bus(as_service=sender))

    return refusal(sender, connect, lambda bus: bus.append(bodies))


@pytest.mark.parametrize(("event_type", "sender"), NOT_THE_OWNER)
def test_on_nats_a_type_that_gets_past_the_server_is_dead_lettered(
        shared_nats_sandbox: Sandbox, event_type: str, sender: str) -> None:
    """The server checks subjects, not bodies: a client with `sender`'s credential (not
    msshop's relay, which takes the subject from the event) publishes another's type on a
    subject of its own. The consumer sees the type's owner is not its sender and
    dead-letters it; nothing is applied."""
    import nats

    sandbox = shared_nats_sandbox
    address = sandbox.state.bus.address(sender, sandbox.state.token)
    own_type = next(t for t, owner in events.OWNERS.items() if owner == sender)
    event = foreign(event_type, sender, aggregate_id=4800 + len(event_type) + len(sender))

    async def publish() -> int:
        nc = await nats.connect(list(address.servers), user=address.user,
                                password=address.password,
                                inbox_prefix=address.inbox.encode())
        try:
            ack = await nc.jetstream().publish(
                f"msshop.{address.sandbox}.{sender}.{own_type}", events.encode(event),
                headers={"Nats-Msg-Id": f"{sender}.{event.id}"})
            return ack.seq
        finally:
            await nc.close()

    position = asyncio.run(publish())
    deadline = time.monotonic() + 10
    while not (found := [d for d in sandbox.client().dead_letters(500)["dead_letters"]
                         if d["position"] == position]):
        assert time.monotonic() < deadline, "the foreign event was not refused"
        time.sleep(0.05)
    owner = events.OWNERS[event_type]
    assert found[0]["reason"] == f"a {event_type} comes only from {owner}, but {sender} sent it"
    with sqlite3.connect(sandbox.root / "data" / "query" / "query.db") as conn:  # nothing applied
        versions = [v for table in ("users_replica", "products_replica")
                    for (v,) in conn.execute(f"SELECT version FROM {table}")]
        orders = conn.execute("SELECT count(*) FROM orders_replica WHERE id = ?",
                              (event.aggregate_id,)).fetchone()[0]
    assert HUGE not in versions and orders == 0


def test_the_owners_token_may_not_append_and_is_told_so(shared_sandbox: Sandbox) -> None:
    """It is the sandbox's token (the owner reads the bus with it): the refusal says the
    owner may not append, not that the token is someone else's."""
    client = shared_sandbox.client()
    status, answer = client.exchange("bus", "POST", "/events", [forged()],
                                     bearer(shared_sandbox.state.token))
    assert status == 403
    assert answer["error"] == ("appending to the bus refused: that is the sandbox owner's "
                               "token, and the owner may not: only the sandbox's services may")
    status, answer = client.exchange("bus", "POST", "/events", [forged()], bearer("0" * 64))
    assert (status, answer["error"]) == (
        403, "appending to the bus refused: that is not this sandbox's token")


def test_on_the_log_types_written_past_the_bus_are_dead_lettered(sandbox: Sandbox) -> None:
    """The log bus refuses them at the door; written into bus.db behind its back (the
    test plays someone with the file, while the bus is stopped), each type from a service
    that does not own it is still not applied: the read model dead-letters it."""
    sandbox.run("stop", "bus", check=True)
    foreigners = [foreign(event_type, sender, aggregate_id=4900 + i)
                  for i, (event_type, sender) in enumerate(NOT_THE_OWNER)]
    with sqlite3.connect(sandbox.root / "data" / "bus" / "bus.db") as conn:
        conn.executemany(
            "INSERT INTO events (id, type, source, aggregate_type, aggregate_id, "
            "aggregate_version, occurred_at, appended_at, trace_id, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
            [(e.id, e.type, e.source, e.aggregate_type, e.aggregate_id, e.aggregate_version,
              e.occurred_at, e.occurred_at, events.encode(e)) for e in foreigners])
    sandbox.run("start", "bus", check=True)
    deadline = time.monotonic() + 10
    while len(letters := sandbox.client().dead_letters(100)["dead_letters"]) < len(foreigners):
        assert time.monotonic() < deadline, letters
        time.sleep(0.05)
    assert sorted(d["reason"] for d in letters) == sorted(
        f"a {e.type} comes only from {events.OWNERS[e.type]}, but {e.source} sent it"
        for e in foreigners)
    with sqlite3.connect(sandbox.root / "data" / "query" / "query.db") as conn:
        assert [conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("users_replica", "products_replica", "orders_replica")] == \
            [0, 0, 0], "nothing applied"


def test_only_orders_takes_stock_and_credit_and_only_the_owner_gives_them(
        shared_sandbox: Sandbox) -> None:
    """The ledgers' doors (issue 26): a purchase's takes and give-backs come from orders
    alone, restocks and top-ups from the sandbox's owner alone; each other caller is told
    who may, and nothing moves."""
    client = shared_sandbox.client()
    user = client.signup(f"ledger-{time.time_ns()}@example.com", "Ledger")["id"]
    product = client.request("products", "POST", "/products", {
        "title": "Guarded", "price": 1.0, "stock": 3})["id"]
    owner = bearer(shared_sandbox.state.token)
    takes = {"/products/takes": {"takes": [{"purchase": "forged-1", "product_id": product,
                                            "quantity": 3}]},
             "/users/takes": {"takes": [{"purchase": "forged-1", "user_id": user,
                                         "amount_cents": 100}]},
             "/products/takes/give-back": {"purchases": ["forged-1"]},
             "/users/takes/give-back": {"purchases": ["forged-1"]}}
    for path, body in takes.items():
        service = path.split("/")[1]
        for headers, status, says in [
            ({}, 401, "needs a service's credential (only orders may)"),
            (owner, 403, "the owner may not"),
            (bearer("0" * 64), 403, "refused: that is not this sandbox's token"),
            (shared_sandbox.as_service("query"), 403, "not this sandbox's token"),
            (shared_sandbox.as_service("users"), 403, "not this sandbox's token"),
        ]:
            answer = client.exchange(service, "POST", path, body, headers)
            assert answer[0] == status and says in answer[1]["error"], (path, headers, answer)
    gives = {"/products/stock": {"products": [{"id": product, "quantity": 5}]},
             "/users/credit": {"users": [{"id": user, "amount": 5.0}]}}
    for path, body in gives.items():
        service = path.split("/")[1]
        for headers, status in [({}, 401), (shared_sandbox.as_service("orders"), 403)]:
            answer = client.exchange(service, "POST", path, body, headers)
            assert answer[0] == status, (path, headers, answer)
    assert client.request("products", "GET", f"/products/{product}")["stock"] == 3
    assert client.request("users", "GET", f"/users/{user}")["credit"] == 1000.0
    taken = client.request("products", "POST", "/products/takes", takes["/products/takes"],
                           shared_sandbox.as_service("orders"))
    assert taken["refused"] == [], "orders itself may"
    assert client.request("products", "POST", "/products/stock", gives["/products/stock"],
                          owner) == {"given": 1}, "and the owner restocks"
    assert client.request("products", "GET", f"/products/{product}")["stock"] == 5
    client.request("products", "POST", "/products/takes/give-back",
                   takes["/products/takes/give-back"], shared_sandbox.as_service("orders"))
    assert client.request("products", "GET", f"/products/{product}")["stock"] == 8
