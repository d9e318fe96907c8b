"""The bus's door on NATS (runtime/services/bus_door): a program of your own reads the nats
bus through it, and meets the bus's faults there as it would at the log bus. Real
sandboxes on free ports, real nats-servers, the Python reference Service D as the query
service; the rungs graded through the door are in test_challenges.py."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from msshop.contracts.credentials import bearer
from msshop.instruments.checking import caught_up
from tests.conftest import ROOT, Sandbox, running_sandbox, stock_up

REFERENCE = f"{sys.executable} {ROOT / 'examples' / 'service-d-python' / 'service.py'}"
DOOR = "bus-door"


def until(condition: Callable[[], object], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def consumer(sandbox: Sandbox) -> dict[str, Any]:
    return dict(sandbox.client().health("query").get("consumer") or {})


def door_health(sandbox: Sandbox) -> dict[str, Any]:
    return dict(sandbox.client().health(DOOR))


def purchases(sandbox: Sandbox, count: int, tag: str) -> None:
    stock_up(sandbox, range(1, 11), range(1, 6))  # a purchase takes stock and credit
    client = sandbox.client()
    client.add_batch("orders", [{"user_id": 1 + n % 10, "product_id": 1 + n % 5,
                                 "quantity": 1, "request_id": f"{tag}-{n}"}
                                for n in range(count)])


def door_port(sandbox: Sandbox) -> int:
    doors = sandbox.state.services[DOOR].doors
    assert doors is not None
    return doors["query"]


def info_line(port: int) -> dict[str, Any]:
    """The INFO a client is first sent on `port`."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        data = b""
        while b"\r\n" not in data:
            chunk = conn.recv(4096)
            assert chunk, "closed before INFO"
            data += chunk
    line = data.split(b"\r\n", 1)[0]
    assert line.startswith(b"INFO ")
    info: dict[str, Any] = json.loads(line[5:])
    return info


@pytest.fixture(scope="module")
def door_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("door") / "sandbox",
                         MSSHOP_BUS_BACKEND="nats", MSSHOP_QUERY_COMMAND=REFERENCE) as sandbox:
        sandbox.run("seed", "--users", "10", "--products", "5", "--orders", "50", "--wait",
                    check=True)
        yield sandbox


def test_the_program_reads_through_its_door_which_status_shows(door_sandbox: Sandbox
                                                               ) -> None:
    sandbox = door_sandbox
    service_file = json.loads((sandbox.root / "data" / "query" / "service.json").read_text())
    assert service_file["bus"]["servers"] == [f"nats://127.0.0.1:{door_port(sandbox)}"]
    assert DOOR not in service_file["peers"]  # not a service of the shop: nothing to call
    status = json.loads(sandbox.run("status", "--json", check=True).stdout)
    door = next(s for s in status["services"] if s["name"] == DOOR)
    assert door["status"] == "running" and door["doors"] == {"query": door_port(sandbox)}
    health = door_health(sandbox)
    assert health["readers"]["query"]["connections"] >= 1
    assert [t["name"] for t in health["tasks"]] == ["door for query"]
    verified = sandbox.run("verify", check=True)
    assert "equals the monolith join for all 10 users" in verified.stdout


def test_faults_that_cannot_be_are_refused_in_one_line(door_sandbox: Sandbox) -> None:
    sandbox = door_sandbox
    refused = sandbox.run("chaos", "query", "--to", "users", "--reorder-rate", "0.5")
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0, refused.stderr
    assert "give it with --to bus" in refused.stderr and "Traceback" not in refused.stderr
    client = sandbox.client()
    status, answer = client.exchange(DOOR, "POST", "/chaos",
                                     {"caller": "users", "duplicate_rate": 0.5},
                                     headers=bearer(sandbox.state.token))
    assert status == 422 and set(answer) == {"error", "status", "service"}, answer
    assert answer["service"] == DOOR and "caller 'users'" in answer["error"]
    status, answer = client.exchange(
        DOOR, "GET", "/chaos/deliveries?reader=orders", headers=bearer(sandbox.state.token))
    assert status == 422 and "reader 'orders'" in answer["error"], answer
    status, answer = client.exchange(DOOR, "POST", "/chaos",
                                     {"caller": "query", "error_rate": 1})
    assert status == 401 and answer["service"] == DOOR, answer  # the owner's only
    assert consumer(sandbox)["bus_error"] is None  # nothing was set


def test_a_partition_shows_in_the_readers_health_and_after_it_every_event_once(
        door_sandbox: Sandbox) -> None:
    sandbox = door_sandbox
    caught_up(sandbox.client(), timeout=30)
    applied = consumer(sandbox)["applied"]
    before = sandbox.client().bus_head()
    sandbox.run("chaos", "query", "--to", "bus", "--error-rate", "1", check=True)
    try:
        purchases(sandbox, 40, "cut-off")
        until(lambda: consumer(sandbox)["bus_error"], "the reader says the bus is gone")
        until(lambda: door_health(sandbox)["readers"]["query"]["connections"] == 0,
              "its connections closed, and kept closed")
        shown = sandbox.run("status", check=True).stdout
        assert "chaos on query -> bus" in shown and "its consumer is retrying" in shown
        held = consumer(sandbox)["position"]
        assert held < sandbox.client().bus_head(), "nothing is read while it lasts"
    finally:
        sandbox.run("chaos", "query", "--to", "bus", "--clear", check=True)
    caught_up(sandbox.client(), timeout=30)
    until(lambda: consumer(sandbox)["bus_error"] is None, "the reader is back on the bus")
    after = consumer(sandbox)
    assert after["applied"] - applied == sandbox.client().bus_head() - before, \
        "every event applied once: none skipped, none twice"
    assert after["dead_letters"] == 0
    verified = sandbox.run("verify", check=True)
    assert "equals the monolith join for all 10 users" in verified.stdout


def test_with_three_nodes_a_killed_node_behind_the_door_is_passed_over(tmp_path: Any
                                                                      ) -> None:
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND="nats",
                         MSSHOP_BUS_NODES="3", MSSHOP_QUERY_COMMAND=REFERENCE) as sandbox:
        # the nodes tell a client of the others, to go round the door to: the door does not
        node_port = sandbox.state.services["bus"].port
        until(lambda: info_line(node_port).get("connect_urls"),
              "the cluster's nodes know each other")
        assert "connect_urls" not in info_line(door_port(sandbox))
        sandbox.run("seed", "--users", "10", "--products", "5", "--orders", "50", "--wait",
                    check=True)
        reading = door_health(sandbox)["readers"]["query"]["node"]
        node = next(name for name, s in sandbox.state.services.items()
                    if s.kind == "nats-server" and reading.endswith(f":{s.port}"))
        sandbox.run("kill", node, check=True)
        purchases(sandbox, 30, "past-a-node")
        caught_up(sandbox.client(), timeout=60)
        assert door_health(sandbox)["readers"]["query"]["node"] != reading
        verified = sandbox.run("verify", check=True)
        assert "equals the monolith join for all 10 users" in verified.stdout
        with contextlib.suppress(Exception):
            sandbox.run("start", node)
