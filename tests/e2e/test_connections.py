"""Connections cannot starve a service (issue 23, finding 4): under a low file-descriptor
limit, a flood of idle connections and trickling clients once made orders and query
refuse everyone, with nothing in their logs, and `status` called them down. Here the
same flood meets a sandbox started under a soft limit of 64 descriptors and a hard limit
of 256 (128 when the test itself may open too few for that flood), which `up` raises the
soft one to: purchases and queries are answered, the flood is closed by the deadlines and
the cap (each said once in the service's log), and `status` shows the services running. A
bus long-poll longer than the request deadline is not cut; a service that runs but does
not answer is told apart from one that is down."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from msshop.contracts.config import ConnectionLimits
from msshop.contracts.credentials import bearer
from msshop.runtime.fd_limit import connection_cap, raise_fd_limit
from msshop.runtime.http1 import Connection
from tests.conftest import Sandbox, one_purchase, running_sandbox, sandbox_env, stop_sandbox

TRICKLERS = 10  # to orders and to query each: clients that send a byte now and then
DEADLINE = 2.0  # seconds to send a request (MSSHOP_REQUEST_TIMEOUT)


def limits_for_the_flood() -> tuple[int, int]:
    """(the sandbox's hard fd limit, how many idle connections to flood each service
    with): 256 and its cap plus 100, or, when this test may open too few descriptors for
    that, 128 and its cap plus 100."""
    soft, _ = raise_fd_limit()
    for hard in (256, 128):
        flood = connection_cap(ConnectionLimits(), hard) + 100
        if soft >= 2 * (flood + TRICKLERS) + 100:
            return hard, flood
    pytest.skip(f"this test cannot open the descriptors a flood needs (limit {soft})")


@contextlib.contextmanager
def sandbox_under_low_limit(root: Path, hard: int) -> Iterator[Sandbox]:
    sandbox = Sandbox(root, sandbox_env(root, MSSHOP_REQUEST_TIMEOUT=str(DEADLINE)))
    result = subprocess.run([sys.executable, "-m", "msshop", "up", "--detach"],
                            env=sandbox.env, capture_output=True, text=True, timeout=60,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                                  (64, hard)))
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield sandbox
    finally:
        stop_sandbox(sandbox)


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def open_files_limit(pid: int) -> tuple[int, int]:
    """A process's (soft, hard) RLIMIT_NOFILE, as /proc shows it."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open files limit for pid {pid}")


def closed(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (EOF or reset; any bytes it sent are read)."""
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
        return True
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def test_a_flood_of_idle_and_trickling_connections_under_a_low_fd_limit_starves_no_one(
        tmp_path: Path) -> None:
    hard, flood_size = limits_for_the_flood()
    cap = connection_cap(ConnectionLimits(), hard)
    with sandbox_under_low_limit(tmp_path / "sandbox", hard) as sandbox:
        one_purchase(sandbox)
        state = sandbox.state
        # started with a soft limit of 64: the supervisor raised it to the hard one before
        # it forked, so every service has it
        for pid in sandbox.pids():
            assert open_files_limit(pid) == (hard, hard), pid
        flood: list[socket.socket] = []
        tricklers: list[socket.socket] = []
        try:
            for name in ("orders", "query"):
                port = state.services[name].port
                flood += [socket.create_connection((state.host, port), timeout=5)
                          for _ in range(flood_size)]
                for _ in range(TRICKLERS):
                    sock = socket.create_connection((state.host, port), timeout=5)
                    sock.sendall(b"GET /health HTTP/1.1\r\nho")
                    tricklers.append(sock)
            client = sandbox.client()
            for _ in range(5):  # answered while the flood is open
                order = client.request("orders", "POST", "/orders",
                                       {"user_id": 1, "product_id": 1})
                assert order["user_id"] == 1
                for strategy in ("direct-call", "replicated"):
                    client.request("query", "GET", f"/user-orders/1?strategy={strategy}")
            status = sandbox.status()
            for service in status["services"]:
                assert (service["status"], service["health"]) == ("running", "ok"), service
            for sock in tricklers:  # a byte now and then keeps none of them alive
                with contextlib.suppress(OSError):
                    sock.sendall(b"s")
            until(lambda: all(closed(s) for s in flood + tricklers), DEADLINE * 4 + 5,
                  "the flood's connections closed by the deadline and the cap")
        finally:
            for sock in flood + tricklers:
                sock.close()
        for name in ("orders", "query"):
            log = Path(state.services[name].log).read_text()
            cap_lines = [line for line in log.splitlines() if "the most it takes" in line]
            assert len(cap_lines) == 1, cap_lines  # once per burst, not per connection
            assert f"{name} has {cap} connections open" in cap_lines[0]
            assert log.count("closes connections that send no complete request") <= 1
            assert "Traceback" not in log
        after = client.request("query", "GET", "/user-orders/1?strategy=direct-call")
        assert len(after["orders"]) == 6


def test_a_bus_long_poll_longer_than_the_request_deadline_is_not_cut(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sandbox", MSSHOP_REQUEST_TIMEOUT="1") as sandbox:
        state = sandbox.state
        bus = state.services["bus"]
        with Connection(state.host, bus.port, timeout=30) as connection:
            started = time.monotonic()
            status, body = connection.request("GET", "/events?after=0&wait_ms=4000",
                                              headers=bearer(state.token))
            waited = time.monotonic() - started
            assert status == 200, body
            assert waited >= 3.9, f"the long-poll answered after {waited:.1f} s"
            status, _ = connection.request("GET", "/health")  # the connection is kept
            assert status == 200
        one_purchase(sandbox)  # the relays' and the consumer's long-polls are not cut either


def test_status_tells_a_service_that_runs_but_does_not_answer_from_one_that_is_down(
        sandbox: Sandbox) -> None:
    orders = sandbox.state.services["orders"]
    assert orders.pid is not None
    os.kill(orders.pid, signal.SIGSTOP)  # runs, but answers nothing
    try:
        service = next(s for s in sandbox.status()["services"] if s["name"] == "orders")
        assert (service["status"], service["health"]) == ("running", "not answering")
        assert service["unanswered"] == "no answer within 1 s"
        said = sandbox.run("status").stdout
        assert f"orders runs (pid {orders.pid}) but is not answering: no answer within 1 s" \
            in " ".join(said.split())
    finally:
        os.kill(orders.pid, signal.SIGCONT)
    service = next(s for s in sandbox.status()["services"] if s["name"] == "orders")
    assert service["health"] == "ok" and "unanswered" not in service
