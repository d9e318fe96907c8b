"""Issue 26, the choreographed saga: orders records the order pending, products and users
take stock and credit as consumers of the bus (each in its own process and file, each
step applied once), a credit refusal gives the stock back, and orders ends the order
confirmed or rejected with the reason. Issue 27's orchestrated saga keeps the same promises
(the tests parametrized by `write`): orders' orchestrator sends the commands and ends the
order on the replies. Real service processes, real SQLite files, on the sandbox's log and
on NATS JetStream; the invariant checked from the files (instruments/invariant.py)."""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import pytest

from msshop.contracts.errors import MsshopError
from msshop.contracts.outcomes import SagasReport
from msshop.contracts.strategies import WriteStrategy
from msshop.instruments import journey, purchase
from msshop.instruments.client import ShopClient
from tests.conftest import Sandbox, running_sandbox
from tests.e2e.test_purchases import BUYERS, LEFT, breaches, read, shop, stock_of

SAGA = WriteStrategy.SAGA
ORCHESTRATED = WriteStrategy.SAGA_ORCHESTRATED
#: both sagas keep the same promises
SAGAS = pytest.mark.parametrize("write", [SAGA, ORCHESTRATED])
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


@SAGAS
def test_a_saga_purchase_confirms(any_sandbox: Sandbox, write: WriteStrategy) -> None:
    """Pending at once (202, the semantic lock), confirmed once products and users have
    taken stock and credit; the price is products'; the CLI says so."""
    sandbox = any_sandbox
    client = sandbox.client()
    (user,), product = shop(client, 1, 5, price=4.25)
    order, created = client.buy(user, product, 2, request_id="saga-1", write=write)
    assert created and order["status"] == "pending" and order["reason"] is None
    assert order["unit_price"] == 0  # the price is products' to say
    done = client.order(order["id"], wait_ms=10_000)
    assert (done["status"], done["unit_price"], done["total"]) == ("confirmed", 4.25, 8.5)
    assert stock_of(sandbox, product) == 3
    assert credit_of(sandbox, user) == 1000 - 8.5
    said = sandbox.run("buy", "--user", str(user), "--product", str(product), "--write",
                       write, "--wait")
    assert said.returncode == 0, said.stderr
    assert f"confirmed ({write})" in said.stdout and "at 4.25 = 4.25" in said.stdout
    settled(sandbox)
    assert breaches(sandbox) == []
    for service in ("products", "users", "orders"):  # /health shows each step consumer
        health = client.health(service)
        steps = health.get("saga")
        assert steps is not None and steps["dead_letters"] == 0, health
        assert "consumer" in {t["name"] for t in health.get("tasks", [])}, health


@SAGAS
def test_out_of_stock_is_rejected_with_the_reason_and_takes_nothing(
        any_sandbox: Sandbox, write: WriteStrategy) -> None:
    sandbox = any_sandbox
    client = sandbox.client()
    (user,), product = shop(client, 1, 3)
    said = sandbox.run("buy", "--user", str(user), "--product", str(product), "--quantity",
                       "4", "--write", write, "--wait", "--json")
    assert said.returncode == 1, said.stderr
    bought = json.loads(said.stdout)
    assert (bought["outcome"], bought["strategy"]) == ("rejected", write)
    reason = f"out of stock: product {product} has 3, 4 asked"
    assert bought["reason"] == reason and bought["order"]["reason"] == reason
    assert said.stderr.strip() == f"error: {reason}"
    said = sandbox.run("buy", "--user", str(user), "--product", str(product), "--quantity",
                       "4", "--write", write, "--wait")
    assert said.returncode == 1 and f"rejected ({write})" in said.stdout
    assert stock_of(sandbox, product) == 3 and credit_of(sandbox, user) == 1000
    assert read(sandbox, "products", "SELECT count(*) FROM stock_takes") == [(0,)]
    settled(sandbox)
    assert breaches(sandbox) == []


@SAGAS
def test_credit_running_out_gives_the_stock_back_then_rejects(any_sandbox: Sandbox,
                                                              write: WriteStrategy) -> None:
    """The compensation: products took the stock, users refused the credit, products gave
    the stock back (StockGivenBack), and only then orders rejected the order, with the
    credit refusal's reason: a rejected order never holds anything. Orchestrated, orders
    sent each command: TakeStock, TakeCredit, then GiveStockBack."""
    sandbox = any_sandbox
    client = sandbox.client()
    (user,), product = shop(client, 1, 5, price=10.0, credit=15.0)
    order, _ = client.buy(user, product, 2, request_id="too-dear", write=write)
    done = client.order(order["id"], wait_ms=10_000)
    assert (done["status"], done["reason"]) == (
        "rejected", f"not enough credit: user {user} has 15.00, 20.00 asked")
    assert done["unit_price"] == 10.0  # the price the credit refusal said
    assert stock_of(sandbox, product) == 5 and credit_of(sandbox, user) == 15
    assert read(sandbox, "products", "SELECT amount, given_back_at IS NOT NULL FROM "
                "stock_takes WHERE purchase = 'too-dear'") == [(2, 1)]
    assert [kind for (kind,) in read(sandbox, "products", "SELECT type FROM outbox "
                                     "WHERE aggregate_type = 'purchase' ORDER BY seq")] == [
        "StockTaken", "StockGivenBack"]
    commands = ["TakeStock", "TakeCredit", "GiveStockBack"] if write is ORCHESTRATED else []
    assert sorted(kind for (kind,) in read(sandbox, "orders", "SELECT type FROM outbox")
                  ) == sorted(["OrderPlaced", "OrderRejected", *commands])
    if write is ORCHESTRATED:  # one command at a time, each after the reply before it
        assert [kind for (kind,) in read(sandbox, "orders", "SELECT type FROM outbox WHERE "
                                         "aggregate_type = 'purchase' ORDER BY seq")
                ] == commands
        assert read(sandbox, "orders", "SELECT state, reason FROM sagas") == [
            ("rejected", done["reason"])]
    settled(sandbox)
    assert breaches(sandbox) == []
    assert sandbox.run("verify").returncode == 0


@SAGAS
@pytest.mark.parametrize("bus", ["log", "nats"])
def test_the_last_items_go_to_exactly_as_many_saga_buyers(tmp_path: Path, bus: str,
                                                          write: WriteStrategy) -> None:
    """50 saga buyers at once of a product with 10 left: exactly 10 confirmed, 40 rejected
    out of stock, the stock at 0 (never below), nothing pending, the invariant kept."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND=bus) as sandbox:
        users, product = shop(sandbox.client(), BUYERS, LEFT)
        state = sandbox.state

        def buy(user: int) -> purchase.Bought:
            return purchase.buy(state, write, user, product, 1, wait=WAIT)

        with ThreadPoolExecutor(BUYERS) as pool:
            bought = list(pool.map(buy, users))
        assert sorted(b.outcome for b in bought).count("confirmed") == LEFT
        rejected = [b for b in bought if b.outcome == "rejected"]
        assert len(rejected) == BUYERS - LEFT
        assert all((b.reason or "").startswith(f"out of stock: product {product} has 0, "
                                               "1 asked") for b in rejected)
        assert stock_of(sandbox, product) == 0
        assert outcomes(sandbox, product) == {"confirmed": LEFT, "rejected": BUYERS - LEFT}
        settled(sandbox)
        assert breaches(sandbox) == []


@SAGAS
def test_duplicated_and_redelivered_events_apply_each_step_once(any_sandbox: Sandbox,
                                                                write: WriteStrategy) -> None:
    """Every participant's reads of the bus handed back duplicates and redeliveries (the
    bus's delivery faults): each step is applied once — one take per purchase, one
    outcome event per step (and, orchestrated, one command per step), the orders ended
    once."""
    sandbox = any_sandbox
    client = sandbox.client()
    users, product = shop(client, 6, 100, price=2.0, credit=5.0)
    for service in ("products", "users", "orders"):
        sandbox.run("chaos", service, "--to", "bus", "--duplicate-rate", "1",
                    "--redeliver-rate", "1", check=True)
    placed = [client.buy(user, product, 3 if n % 2 else 2, request_id=f"dup-{n}",
                         write=write)[0] for n, user in enumerate(users)]
    ended = [client.order(o["id"], wait_ms=10_000) for o in placed]
    assert [o["status"] for o in ended] == ["confirmed", "rejected"] * 3  # 6 > 5 >= 4
    settled(sandbox)
    assert stock_of(sandbox, product) == 100 - 3 * 2
    assert read(sandbox, "products", "SELECT count(*), sum(given_back_at IS NOT NULL) "
                "FROM stock_takes") == [(6, 3)]
    assert read(sandbox, "users", "SELECT count(*), sum(amount) FROM credit_takes") == [
        (3, 3 * 400)]
    steps = dict(read(sandbox, "products", "SELECT type, count(*) FROM outbox WHERE "
                      "aggregate_type = 'purchase' GROUP BY type"))
    assert steps == {"StockTaken": 6, "StockGivenBack": 3}
    assert dict(read(sandbox, "users", "SELECT type, count(*) FROM outbox WHERE "
                     "aggregate_type = 'purchase' GROUP BY type")) == {
        "CreditTaken": 3, "CreditRefused": 3}
    commands = {"TakeStock": 6, "TakeCredit": 6, "GiveStockBack": 3} \
        if write is ORCHESTRATED else {}
    assert dict(read(sandbox, "orders", "SELECT type, count(*) FROM outbox GROUP BY type")
                ) == {"OrderPlaced": 6, "OrderConfirmed": 3, "OrderRejected": 3, **commands}
    head = client.bus_head()
    for service in ("products", "users", "orders"):  # each was handed events more than once
        assert client.health(service)["saga"]["applied"] > head, service
        sandbox.run("chaos", service, "--clear", check=True)
    assert breaches(sandbox) == []


@SAGAS
@pytest.mark.parametrize("victim", ["products", "users", "orders", "bus"])
def test_a_participant_killed_during_saga_purchases_ends_every_order(
        any_sandbox: Sandbox, victim: str, write: WriteStrategy) -> None:
    """A participant (or the bus that carries the saga, or, orchestrated, the orchestrator:
    orders) SIGKILLed while saga purchases are under way: once it is started again, every
    order is confirmed or rejected, none pending, and verify is clean."""
    sandbox = any_sandbox
    client = sandbox.client()
    users, product = shop(client, 40, 25, price=3.0, credit=10.0)

    def buy(user: int) -> int | None:
        try:
            order, _ = ShopClient(sandbox.state).buy(user, product, 1 + user % 3,
                                                     request_id=f"kill-{user}", write=write)
        except MsshopError:
            return None  # orders itself was killed: this purchase may never have been made
        return int(order["id"])

    # the victim's steps slowed (its reads of the bus, its appends), so that sagas are
    # under way when it dies; the bus's own death: orders' appends slowed
    slowed = "orders" if victim == "bus" else victim
    sandbox.run("chaos", slowed, "--to", "bus", "--latency", "500", check=True)
    with ThreadPoolExecutor(8) as pool:
        placing = [pool.submit(buy, user) for user in users]
        deadline = time.monotonic() + WAIT
        while not read(sandbox, "orders", "SELECT 1 FROM orders LIMIT 1"):
            assert time.monotonic() < deadline, "no purchase was made"
            time.sleep(0.005)
        sandbox.run("kill", victim, check=True)
        placed = [f.result(timeout=60) for f in placing]
    assert read(sandbox, "orders", "SELECT count(*) FROM orders WHERE status = "
                "'pending'")[0][0] > 0, "the victim died with sagas under way"
    sandbox.run("start", victim, check=True)  # started afresh: without the fault
    if slowed != victim:
        sandbox.run("chaos", slowed, "--clear", check=True)
    settled(sandbox, timeout=60)
    counts = outcomes(sandbox, product)
    assert set(counts) <= {"confirmed", "rejected"} and sum(counts.values()) >= len(
        [p for p in placed if p is not None])
    confirmed = read(sandbox, "orders", "SELECT coalesce(sum(quantity), 0) FROM orders "
                     "WHERE status = 'confirmed'")[0][0]
    assert stock_of(sandbox, product) == 25 - confirmed
    assert breaches(sandbox) == []
    assert sandbox.run("verify").returncode == 0


def test_bad_input_is_rejected_with_the_reason_or_refused_in_one_line(
        sandbox: Sandbox) -> None:
    client = sandbox.client()
    (user,), product = shop(client, 1, 5, price=1.0)
    # unknown ids: the order is recorded, then rejected with the reason
    nobody, _ = client.buy(999, product, 1, write=SAGA)
    nothing, _ = client.buy(user, 999, 1, write=SAGA)
    assert client.order(nobody["id"], wait_ms=10_000)["reason"] == "user_id 999: no such user"
    assert client.order(nothing["id"], wait_ms=10_000)["reason"] == \
        "product_id 999: no such product"
    assert stock_of(sandbox, product) == 5  # the unknown user's stock went back
    # a repeated request_id: one order, whatever its status; the repeat answers 200
    body = {"user_id": user, "product_id": product, "quantity": 2, "request_id": "once"}
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: ShopClient(sandbox.state).exchange(
            "orders", "POST", "/orders?write=saga", body), range(10)))
    assert sorted(status for status, _ in answers).count(202) == 1
    assert {status for status, _ in answers} <= {200, 202}
    assert len({answer["id"] for _, answer in answers}) == 1
    settled(sandbox)
    assert stock_of(sandbox, product) == 3
    assert read(sandbox, "orders", "SELECT count(*) FROM orders WHERE request_id = "
                "'once'") == [(1,)]
    # what orders refuses at the door, in one line
    for path, words in [("/orders?write=monolith", "msshop buy --write monolith"),
                        ("/orders?write=sagas", "write")]:
        status, answer = client.exchange("orders", "POST", path, body)
        assert status == 422 and words in answer["error"], answer
        assert set(answer) == {"error", "status", "service"}
    status, answer = client.exchange("orders", "GET", f"/orders/{nobody['id']}?wait_ms=10001")
    assert status == 422 and "wait_ms" in answer["error"], answer
    said = sandbox.run("buy", "--user", str(user), "--product", str(product), "--wait")
    assert said.returncode == 2 and "use --write saga" in said.stderr
    assert said.stderr.count("\n") == 1, said.stderr
    said = sandbox.run("buy", "--user", str(user), "--product", str(product), "--write",
                       "saga", "--timeout", "3")
    assert said.returncode == 2 and "add --wait" in said.stderr
    assert said.stderr.count("\n") == 1, said.stderr
    assert breaches(sandbox) == []
    verified = sandbox.run("verify")  # the order of no user is no user's in the read model
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_saga_still_pending_exits_3_and_confirms_once_products_is_back(
        sandbox: Sandbox) -> None:
    client = sandbox.client()
    (user,), product = shop(client, 1, 5)
    sandbox.run("stop", "products", check=True)
    said = sandbox.run("buy", "--user", str(user), "--product", str(product), "--write",
                       "saga", "--wait", "--timeout", "0.5", "--json")
    assert said.returncode == 3, said.stderr
    bought = json.loads(said.stdout)
    assert bought["outcome"] == "pending" and bought["order"]["status"] == "pending"
    sandbox.run("start", "products", check=True)
    done = client.order(bought["order"]["id"], wait_ms=10_000)
    assert done["status"] == "confirmed"
    settled(sandbox)
    assert breaches(sandbox) == []


def sagas_listed(sandbox: Sandbox) -> SagasReport:
    said = sandbox.run("sagas", "--json")
    assert said.returncode == 0, said.stderr
    return cast("SagasReport", json.loads(said.stdout))


def steps_of(listed: SagasReport) -> list[tuple[str, str]]:
    return [(saga["waits_for"], saga["step"]) for saga in listed["sagas"]]


def test_sagas_lists_each_unfinished_saga_with_its_step_and_whose_move_it_is(
        sandbox: Sandbox) -> None:
    """`msshop sagas`: with products stopped a saga waits for products to take the stock;
    with users stopped, once products has, for users to take the credit; with both back,
    none is unfinished (and the terminal says so)."""
    client = sandbox.client()
    (user,), product = shop(client, 1, 5)
    quiet = sandbox.run("sagas")
    assert quiet.returncode == 0 and "no saga is unfinished" in quiet.stdout, quiet.stdout
    sandbox.run("stop", "products", check=True)
    first, _ = client.buy(user, product, 1, request_id="waits-for-products", write=SAGA)
    listed = sagas_listed(sandbox)
    assert (listed["count"], steps_of(listed)) == (
        1, [("products", "placed; the stock not taken yet")])
    (saga,) = listed["sagas"]
    assert (saga["order_id"], saga["purchase"], saga["state"]) == (
        first["id"], "waits-for-products", "pending")
    assert saga["age_seconds"] >= 0
    sandbox.run("stop", "users", check=True)
    sandbox.run("start", "products", check=True)
    deadline = time.monotonic() + WAIT
    while steps_of(listed := sagas_listed(sandbox)) != [
            ("users", "the stock taken; the credit not taken yet")]:
        assert time.monotonic() < deadline, listed
        time.sleep(0.05)
    drawn = sandbox.run("sagas")
    assert "users" in drawn.stdout and "1 saga(s) pending" in drawn.stdout, drawn.stdout
    sandbox.run("start", "users", check=True)
    assert client.order(first["id"], wait_ms=10_000)["status"] == "confirmed"
    assert sagas_listed(sandbox)["count"] == 0
    settled(sandbox)
    assert breaches(sandbox) == []


def test_sagas_shows_a_compensation_waiting_for_products(sandbox: Sandbox) -> None:
    """Credit refused while products is stopped: the saga waits for products to give the
    stock back; once it has, for orders to reject it (or it is already rejected)."""
    client = sandbox.client()
    (user,), product = shop(client, 1, 5, price=10.0, credit=5.0)
    sandbox.run("stop", "users", check=True)
    placed, _ = client.buy(user, product, 1, request_id="refused-later", write=SAGA)
    deadline = time.monotonic() + WAIT
    while steps_of(listed := sagas_listed(sandbox)) != [
            ("users", "the stock taken; the credit not taken yet")]:
        assert time.monotonic() < deadline, listed
        time.sleep(0.05)
    sandbox.run("stop", "products", check=True)
    sandbox.run("start", "users", check=True)
    while steps_of(listed := sagas_listed(sandbox)) != [
            ("products", "the credit refused; the stock not given back yet")]:
        assert time.monotonic() < deadline, listed
        time.sleep(0.05)
    sandbox.run("start", "products", check=True)
    assert client.order(placed["id"], wait_ms=10_000)["status"] == "rejected"
    assert sagas_listed(sandbox)["count"] == 0
    assert stock_of(sandbox, product) == 5
    settled(sandbox)
    assert breaches(sandbox) == []


def test_buy_trace_follows_the_saga_through_every_participant(sandbox: Sandbox) -> None:
    """`buy --write saga --wait --trace`: the spans of products', users' and orders' steps
    are in the purchase's trace, and the outcome is the one said."""
    client = sandbox.client()
    (user,), product = shop(client, 1, 5, price=10.0, credit=15.0)
    for quantity, outcome, exit_code in [(1, "confirmed", 0), (2, "rejected", 1)]:
        said = sandbox.run("buy", "--user", str(user), "--product", str(product),
                           "--quantity", str(quantity), "--write", "saga", "--wait",
                           "--trace", "--json")
        assert said.returncode == exit_code, said.stderr
        bought = json.loads(said.stdout)
        assert bought["outcome"] == outcome
        spans = bought["journey"]["spans"]
        applied = {(s["service"], s["name"]) for s in spans}
        assert ("products", "apply OrderPlaced") in applied, applied
        assert ("users", "apply StockTaken") in applied, applied
        if outcome == "confirmed":
            assert ("orders", "apply CreditTaken") in applied, applied
        else:
            assert ("products", "apply CreditRefused") in applied, applied
            assert ("orders", "apply StockGivenBack") in applied, applied
        assert len({s["trace_id"] for s in spans}) == 1
        # a participant that skips an event (not its step) records nothing of it
        assert not applied & {("users", "apply OrderPlaced"), ("products", "apply StockTaken"),
                              ("orders", "apply OrderPlaced")}, applied


def test_sagas_placed_together_are_each_followed_in_their_own_trace(sandbox: Sandbox
                                                                     ) -> None:
    """Saga purchases that arrive together are committed together (one transaction, like
    direct-call's purchases), yet each OrderPlaced carries its own request's trace: every
    purchase followed at once has its own order's steps in its trace, once each."""
    client = sandbox.client()
    users, product = shop(client, 12, 100, price=1.0, credit=10.0)
    with ThreadPoolExecutor(len(users)) as pool:
        followed = list(pool.map(lambda user: journey.buy(
            sandbox.state, user, product, 1, SAGA, wait=WAIT), users))
    for each in followed:  # another's event in its trace would show twice in one, not in one
        assert each.bought.outcome == "confirmed"
        applied = sorted((s["service"], s["name"]) for s in each.journey.spans
                         if s["name"].startswith("apply "))
        assert applied == [("orders", "apply CreditTaken"), ("products", "apply OrderPlaced"),
                           ("query", "apply OrderConfirmed"), ("query", "apply OrderPlaced"),
                           ("users", "apply StockTaken")], applied
        assert len({s["trace_id"] for s in each.journey.spans}) == 1


def test_verify_right_after_a_burst_of_sagas_waits_for_their_steps(sandbox: Sandbox) -> None:
    """Caught up means the saga's steps too (instruments/waiting.py): `verify` at once after
    purchases placed pending finds every order ended, none "still pending"."""
    client = sandbox.client()
    users, product = shop(client, 30, 20, price=2.0, credit=3.0)
    # users' steps lag: each of its reads of the bus (and appends) takes 300 ms more
    sandbox.run("chaos", "users", "--to", "bus", "--latency", "300", check=True)
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda n: ShopClient(sandbox.state).buy(
            users[n], product, 1 + n % 2, request_id=f"burst-{n}", write=SAGA), range(30)))
    said = sandbox.run("verify", "--json")
    assert said.returncode == 0, said.stdout
    assert read(sandbox, "orders", "SELECT count(*) FROM orders WHERE status = "
                "'pending'") == [(0,)]


@pytest.mark.parametrize("bus", ["log", "nats"])
def test_the_steps_follow_a_new_log_from_its_start(tmp_path: Path, bus: str) -> None:
    """The bus's log lost while it was down (bus.db, or JetStream's store, deleted): the
    read model stops and says to rebuild it, but the saga's step consumers read the new
    log from its start (each step once per order), so a saga placed on it still ends."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND=bus) as sandbox:
        client = sandbox.client()
        (user,), product = shop(client, 1, 5, tag=bus)
        first, _ = client.buy(user, product, 1, write=SAGA)
        assert client.order(first["id"], wait_ms=10_000)["status"] == "confirmed"
        settled(sandbox)
        sandbox.run("stop", "bus", check=True)
        store = sandbox.root / "data" / ("bus" if bus == "log" else "nats/bus")
        shutil.rmtree(store)
        sandbox.run("start", "bus", check=True)
        second, _ = client.buy(user, product, 2, write=SAGA)
        assert client.order(second["id"], wait_ms=10_000)["status"] == "confirmed"
        assert stock_of(sandbox, product) == 2
        for service in ("products", "users", "orders"):
            steps = client.health(service)["saga"]
            assert steps["log_problem"] is None and steps["position"] <= steps["bus_head"]


def sagas_waiting(sandbox: Sandbox, expected: list[tuple[str, str]]) -> SagasReport:
    """`msshop sagas --json` once its sagas are (waits_for, state) as expected."""
    deadline = time.monotonic() + WAIT
    while True:
        listed = sagas_listed(sandbox)
        if [(s["waits_for"], s["state"]) for s in listed["sagas"]] == expected:
            return listed
        assert time.monotonic() < deadline, listed
        time.sleep(0.05)


def test_the_orchestrator_gives_up_on_a_silent_participant_and_undoes_in_reverse(
        tmp_path: Path) -> None:
    """saga.step_timeout (here 1 s): products stopped, the TakeStock goes unanswered, the
    saga gives up on it (GiveStockBack, which waits as long as it takes: products may have
    taken the stock); products back, it applies both in order and the order ends rejected
    with the reason. Users stopped: the credit's step given up on, GiveCreditBack first,
    then GiveStockBack, the stock and the credit as they were. Orders (the orchestrator)
    killed while a deadline passes: started again, it gives up on it then. `msshop sagas`
    says each state from orders.db alone."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_SAGA_STEP_TIMEOUT="1") as sandbox:
        client = sandbox.client()
        (user,), product = shop(client, 1, 5, price=2.0, credit=100.0)
        sandbox.run("stop", "products", check=True)
        first, _ = client.buy(user, product, 2, request_id="silent-products",
                              write=ORCHESTRATED)
        listed = sagas_waiting(sandbox, [("products", "taking-stock")])
        assert listed["sagas"][0]["strategy"] == ORCHESTRATED
        assert "TakeStock sent" in listed["sagas"][0]["step"]
        listed = sagas_waiting(sandbox, [("products", "giving-stock-back")])
        assert "products did not answer within 1 s" in listed["sagas"][0]["step"]
        drawn = sandbox.run("sagas")
        assert "orchestrated" in drawn.stdout and "GiveStockBack" in drawn.stdout, drawn.stdout
        sandbox.run("start", "products", check=True)
        done = client.order(first["id"], wait_ms=10_000)
        assert (done["status"], done["reason"]) == (
            "rejected", "products did not answer within 1 s")
        assert stock_of(sandbox, product) == 5 and credit_of(sandbox, user) == 100
        assert read(sandbox, "products", "SELECT amount, given_back_at IS NOT NULL FROM "
                    "stock_takes WHERE purchase = 'silent-products'") == [(2, 1)]

        sandbox.run("stop", "users", check=True)
        second, _ = client.buy(user, product, 1, request_id="silent-users",
                               write=ORCHESTRATED)
        sagas_waiting(sandbox, [("users", "taking-credit")])
        assert stock_of(sandbox, product) == 4  # taken, and held while the saga waits
        sagas_waiting(sandbox, [("users", "giving-credit-back")])
        assert stock_of(sandbox, product) == 4  # undone in reverse: the credit's first
        sandbox.run("start", "users", check=True)
        done = client.order(second["id"], wait_ms=10_000)
        assert (done["status"], done["reason"]) == (
            "rejected", "users did not answer within 1 s")
        assert stock_of(sandbox, product) == 5 and credit_of(sandbox, user) == 100
        assert [kind for (kind,) in read(
            sandbox, "orders", "SELECT type FROM outbox WHERE aggregate_type = 'purchase' "
            "AND aggregate_id = ? ORDER BY seq", second["id"])] == [
            "TakeStock", "TakeCredit", "GiveCreditBack", "GiveStockBack"]

        sandbox.run("stop", "products", check=True)
        third, _ = client.buy(user, product, 1, request_id="orchestrator-killed",
                              write=ORCHESTRATED)
        sandbox.run("kill", "orders", check=True)
        ((gives_up_at,),) = read(sandbox, "orders", "SELECT deadline FROM sagas WHERE "
                                 "order_id = ?", third["id"])
        while time.time() <= gives_up_at + 0.1:  # the deadline passes, the orchestrator dead
            time.sleep(0.05)
        sandbox.run("start", "orders", check=True)
        sagas_waiting(sandbox, [("products", "giving-stock-back")])
        sandbox.run("start", "products", check=True)
        assert client.order(third["id"], wait_ms=10_000)["reason"] == \
            "products did not answer within 1 s"
        settled(sandbox)
        assert sagas_listed(sandbox)["count"] == 0
        assert breaches(sandbox) == []
        assert sandbox.run("verify").returncode == 0


def test_a_reply_to_a_step_given_up_on_changes_nothing(tmp_path: Path) -> None:
    """Products slow rather than down (its reads of the bus 1.5 s late, the timeout 0.5 s):
    its StockTaken arrives after the saga has given up on it; the orchestrator ignores it
    (it answers a command no longer awaited), products gives the stock back, the order ends
    rejected once, and nothing stays taken."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_SAGA_STEP_TIMEOUT="0.5") as sandbox:
        client = sandbox.client()
        (user,), product = shop(client, 1, 5, price=2.0)
        sandbox.run("chaos", "products", "--to", "bus", "--latency", "1500", check=True)
        order, _ = client.buy(user, product, 1, request_id="late", write=ORCHESTRATED)
        done = client.order(order["id"], wait_ms=10_000)
        assert (done["status"], done["reason"]) == (
            "rejected", "products did not answer within 0.5 s")
        sandbox.run("chaos", "products", "--clear", check=True)
        settled(sandbox)
        assert [kind for (kind,) in read(sandbox, "products", "SELECT type FROM outbox "
                                         "WHERE aggregate_type = 'purchase' ORDER BY seq")
                ] == ["StockTaken", "StockGivenBack"]
        assert dict(read(sandbox, "orders", "SELECT type, count(*) FROM outbox GROUP BY type")
                    ) == {"OrderPlaced": 1, "TakeStock": 1, "GiveStockBack": 1,
                          "OrderRejected": 1}
        assert stock_of(sandbox, product) == 5
        assert breaches(sandbox) == []
