"""Slow clients on the control socket, against a real sandbox: they cannot stall the supervisor.

Three raw TCP connections send one byte every 0.5 s and never a newline (issue 9, item 4: such
a client used to hold the supervisor's loop, so that `stop` took 20 s, a crash was reported
25 s late and `down` took 26 s). Each trickler connects again when the supervisor closes it,
so the pressure lasts the whole test. Meanwhile the supervisor must obey at once.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import time
from types import TracebackType

from msshop.runtime.orchestrator.state import SandboxPaths, is_running
from tests.conftest import Sandbox, wait_gone

TRICKLE_EVERY = 0.5  # seconds between two bytes
TRICKLE_FOR = 10.0  # no trickler outlives this, whatever happens to the test


class Tricklers:
    """`count` threads, each keeping one connection to the control port that trickles."""

    def __init__(self, port: int, count: int = 3) -> None:
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.connected = 0  # connections opened
        self.closed_by_supervisor = 0  # connections the supervisor closed
        self.threads = [threading.Thread(target=self._trickle, daemon=True,
                                         name=f"trickler-{n}") for n in range(count)]

    def __enter__(self) -> Tricklers:
        for thread in self.threads:
            thread.start()
        deadline = time.monotonic() + 2
        while self.connected < len(self.threads) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.connected >= len(self.threads), "the tricklers could not connect"
        time.sleep(0.3)  # each has sent a byte or two: a request is under way on each
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=2)
        assert not any(thread.is_alive() for thread in self.threads)

    def _count(self, attribute: str) -> None:
        with self.lock:
            setattr(self, attribute, getattr(self, attribute) + 1)

    def _trickle(self) -> None:
        ends = time.monotonic() + TRICKLE_FOR
        conn: socket.socket | None = None
        try:
            while not self.stop.is_set() and time.monotonic() < ends:
                if conn is None:
                    try:
                        conn = socket.create_connection(("127.0.0.1", self.port), timeout=1)
                    except OSError:  # the supervisor is gone, or refused us
                        self.stop.wait(0.1)
                        continue
                    self._count("connected")
                if _closed_by_peer(conn):
                    conn.close()
                    conn = None
                    self._count("closed_by_supervisor")
                    continue
                try:
                    conn.send(b"x")  # a request that never ends
                except OSError:
                    conn.close()
                    conn = None
                    self._count("closed_by_supervisor")
                    continue
                self.stop.wait(TRICKLE_EVERY)
        finally:
            if conn is not None:
                conn.close()


def _closed_by_peer(conn: socket.socket) -> bool:
    """Whether the supervisor has closed (or answered and closed) this connection."""
    readable, _, _ = select.select([conn], [], [], 0)
    if not readable:
        return False
    with contextlib.suppress(OSError):
        conn.recv(4096)  # its refusal, or the end
    return True


def timed(sandbox: Sandbox, *args: str) -> float:
    began = time.monotonic()
    sandbox.run(*args, check=True, timeout=60)
    return time.monotonic() - began


def test_slow_clients_do_not_delay_stop_kill_or_down(sandbox: Sandbox) -> None:
    pids = sandbox.pids()
    with Tricklers(sandbox.state.control_port) as tricklers:
        stop = timed(sandbox, "stop", "products")
        assert sandbox.state.services["products"].status == "stopped"

        kill = timed(sandbox, "kill", "orders")  # returns once the supervisor reported it
        orders = sandbox.state.services["orders"]
        assert (orders.status, orders.exit) == ("crashed", "killed by SIGKILL")

        time.sleep(2.5)  # every trickler has been closed at its deadline and came back
        assert tricklers.closed_by_supervisor >= 3
        assert tricklers.connected >= 6

        down = timed(sandbox, "down")
    assert wait_gone(pids, timeout=5) == []
    assert not is_running(SandboxPaths(sandbox.root))
    print(f"with 3 trickling clients: stop {stop:.2f} s, kill reported {kill:.2f} s, "
          f"down {down:.2f} s")
    assert stop < 3, f"stop took {stop:.1f} s"
    assert kill < 3, f"the crash was reported after {kill:.1f} s"
    assert down < 5, f"down took {down:.1f} s"


def test_sigterm_stops_the_supervisor_promptly_with_slow_clients_connected(
        sandbox: Sandbox) -> None:
    pids = sandbox.pids()
    with Tricklers(sandbox.state.control_port):
        began = time.monotonic()
        os.kill(sandbox.state.supervisor_pid, signal.SIGTERM)
        left = wait_gone(pids, timeout=8)
        took = time.monotonic() - began
    assert left == []
    assert not is_running(SandboxPaths(sandbox.root))
    print(f"with 3 trickling clients: SIGTERM to everything gone {took:.2f} s")
    assert took < 4, f"SIGTERM took {took:.1f} s to stop the sandbox"
