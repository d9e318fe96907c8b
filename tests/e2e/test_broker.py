"""The bus on a real broker: NATS JetStream as one server, as a three-node cluster, and as a
server msshop did not start. Nothing here mocks the broker: every test runs real
nats-servers on free 127.0.0.1 ports (the shared promises of both backends are in
test_failures.py, test_query.py and test_bus_contract.py, run on each)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from msshop.contracts import events
from msshop.contracts.errors import MsshopError
from msshop.instruments.checking import caught_up
from msshop.runtime.orchestrator.broker import find_server
from tests.conftest import Sandbox, running_sandbox, stock_up


def buy_for(sandbox: Sandbox, seconds: float, confirmed: list[int], refused: list[str]
            ) -> threading.Thread:
    """Purchases, one after another, for `seconds`, in a thread: what was confirmed, and
    what was refused (and why)."""
    def buy() -> None:
        client = sandbox.client()
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
            try:
                status, answer = client.exchange("orders", "POST", "/orders", {
                    "user_id": 1 + n % 10, "product_id": 1 + n % 5, "request_id": f"c-{n}"})
            except MsshopError as exc:
                refused.append(exc.message)
                continue
            if status == 201:
                confirmed.append(answer["id"])
            else:
                refused.append(f"HTTP {status}: {answer}")

    thread = threading.Thread(target=buy, daemon=True)
    thread.start()
    return thread


def stored_and_replicated(sandbox: Sandbox) -> tuple[set[int], list[int]]:
    with sqlite3.connect(sandbox.root / "data" / "orders" / "orders.db") as conn:
        stored = {i for (i,) in conn.execute("SELECT id FROM orders")}
    with sqlite3.connect(sandbox.root / "data" / "query" / "query.db") as conn:
        replicated = [i for (i,) in conn.execute("SELECT id FROM orders_replica")]
    return stored, replicated


def test_a_node_of_three_killed_under_purchases_loses_nothing_and_stops_nothing(
        tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND="nats",
                         MSSHOP_BUS_NODES="3") as sandbox:
        nodes = [s for s in sandbox.status()["services"] if s["name"].startswith("bus")]
        assert [n["name"] for n in nodes] == ["bus", "bus-2", "bus-3"]
        assert all(n["health"] == "ok" and n["nats"]["server"] for n in nodes)
        sandbox.run("seed", "--users", "10", "--products", "5", "--orders", "50", check=True)
        stock_up(sandbox, range(1, 11), range(1, 6))
        caught_up(sandbox.client(), timeout=20)
        leader = next(n["nats"]["leader"] for n in sandbox.status()["services"]
                      if n.get("nats", {}).get("leader"))
        victim = leader.removeprefix("msshop-")  # the node that leads the stream: the worst

        confirmed: list[int] = []
        refused: list[str] = []
        buyer = buy_for(sandbox, 3.0, confirmed, refused)
        time.sleep(0.7)
        sandbox.run("kill", victim, check=True)
        buyer.join(30)

        assert refused == [], "purchases stopped while a node was down"
        assert len(confirmed) > 50
        caught_up(sandbox.client(), timeout=30)  # on the two nodes left
        stored, replicated = stored_and_replicated(sandbox)
        assert set(confirmed) <= stored
        assert len(replicated) == len(set(replicated)) == len(stored), "each order once"
        status = sandbox.run("status", check=True).stdout
        assert f"{victim} crashed: killed by SIGKILL" in status
        assert "NATS, 3 nodes, stream on 3" in status
        verified = sandbox.run("verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr


def test_an_event_sent_again_after_the_dedup_window_changes_nothing(tmp_path: Path) -> None:
    """JetStream forgets an event's id after its window: a repeat is stored again, at a new
    position. The read model's own check (an entity's version) keeps it from counting."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND="nats",
                         MSSHOP_BUS_DEDUP_WINDOW="0.5") as sandbox:
        sandbox.run("seed", "--users", "3", "--products", "2", "--orders", "5", check=True)
        client = sandbox.client()
        caught_up(client, timeout=10)
        order = next(e for e in sandbox.bus_events() if e.type == events.ORDER_PLACED)
        head = client.bus_head()

        async def send_again() -> list[int]:
            bus = client.bus(as_service="orders")
            try:
                return await bus.append([events.encode(order)])
            finally:
                await bus.close()

        assert asyncio.run(send_again()) != [head + 1], "inside the window: a duplicate"
        assert client.bus_head() == head
        time.sleep(0.7)  # the window is over
        assert asyncio.run(send_again()) == [head + 1], "after it: stored again"
        caught_up(client, timeout=10)
        stored, replicated = stored_and_replicated(sandbox)
        assert sorted(replicated) == sorted(stored), "the read model did not change"
        assert sandbox.client().health("query")["consumer"]["dead_letters"] == 0
        assert sandbox.run("verify").returncode == 0


# --- a server msshop did not start ----------------------------------------------------------


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[str]:
    """A real nats-server of our own, with a user and a password: what a team would run.
    Yields its URL with the credentials."""
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    config = tmp_path / "nats.conf"
    config.write_text(json.dumps({
        "host": "127.0.0.1", "port": ports[0], "http": f"127.0.0.1:{ports[1]}",
        "jetstream": {"store_dir": str(tmp_path / "js")},
        "authorization": {"users": [{"user": "shop", "password": "s3cret"}]},
    }))
    server = subprocess.Popen([find_server(), "--config", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", ports[0]), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "our nats-server did not start"
                time.sleep(0.02)
        yield f"nats://shop:s3cret@127.0.0.1:{ports[0]}"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


def test_an_external_nats_server_is_used_and_left_running(tmp_path: Path, nats_server: str
                                                          ) -> None:
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND="nats",
                         MSSHOP_BUS_URL=nats_server) as sandbox:
        status = sandbox.status()
        assert "bus" not in [s["name"] for s in status["services"]], "none started"
        assert status["bus"]["external"] is True
        assert status["bus"]["servers"] == [nats_server.replace("shop:s3cret@", "")]
        sandbox.run("seed", "--users", "5", "--products", "3", "--orders", "20", check=True)
        caught_up(sandbox.client(), timeout=10)
        assert sandbox.client().bus_head() == 28
        text = sandbox.run("status", check=True).stdout
        assert "bus: NATS JetStream at nats://127.0.0.1:" in text
        assert "s3cret" not in text, "the password is not shown"
        assert sandbox.run("verify").returncode == 0


def test_a_wrong_password_for_an_external_server_is_named(tmp_path: Path, nats_server: str
                                                          ) -> None:
    wrong = nats_server.replace("s3cret", "guess")
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND="nats",
                         MSSHOP_BUS_URL=wrong) as sandbox:
        sandbox.run("signup", "--email", "w@example.com", "--name", "W", check=True)
        deadline = time.monotonic() + 10
        while (outbox := sandbox.client().health("users")["outbox"])["error"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert outbox["error"].startswith("bus is down: cannot reach NATS at nats://")
        assert outbox["error"].endswith(": authorization violation")
        assert outbox["pending"] == 1, "kept in the outbox"


def test_nats_settings_that_cannot_work_are_one_line_each(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSSHOP_")}
    env.update(MSSHOP_SANDBOX=str(root), MSSHOP_BASE_PORT="0", NO_COLOR="1")
    sandbox = Sandbox(root, env)
    for args, says in [
        (["up", "--bus", "kafka"], "bus.backend = 'kafka' (from option for bus.backend) is "
                                   "not allowed: use one of log, nats"),
        (["up", "--bus", "nats", "--bus-nodes", "2"], "bus.nodes = 2"),
    ]:
        result = sandbox.run(*args)
        assert result.returncode == 2, result
        assert result.stderr.strip().startswith(f"error: {says}"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    bench = sandbox.run("bench", "--quick", "--bus", "log,kafka")
    assert bench.returncode == 2 and bench.stderr.strip() == (
        "error: bus.backend = 'kafka' (from option for bus.backend) is not allowed: use one "
        "of log, nats"), "refused before anything is measured"
    env["MSSHOP_BUS_URL"] = "http://localhost:4222"
    result = sandbox.run("up", "--bus", "nats")
    assert result.returncode == 2 and "bus.url = 'http://localhost:4222'" in result.stderr
