"""How a sandbox's processes look from outside and how they stop: each named in `ps`, and a
normal `msshop down` that leaves no error or warning in any log, even with a long-poll
held open on the bus (the bus answers it as it stops, instead of cutting it off).

How fast `down` is, is measured by hand and reported, not asserted here."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from msshop.contracts.credentials import bearer
from msshop.runtime.orchestrator.health import probe
from msshop.runtime.orchestrator.state import SandboxPaths, State
from tests.conftest import Sandbox, one_purchase, wait_gone

PROC = Path("/proc")
MSSHOP_ALARMS = {"WARNING", "ERROR", "CRITICAL"}  # levels a normal stop must not log
NATS_ALARMS = ("[ERR]", "[FTL]")  # nats-server's error and fatal lines


@pytest.mark.skipif(not (PROC / "self" / "cmdline").exists(),
                    reason="reads each process's command line from /proc, which only Linux "
                           "has; there `ps` shows the same")
def test_each_process_is_named_in_ps(sandbox: Sandbox) -> None:
    report = sandbox.status()

    named = {report["supervisor"]["pid"]: "msshop: supervisor"}
    named |= {service["pid"]: f"msshop: {service['name']}" for service in report["services"]}

    assert len(named) == 6, "a supervisor and five services, each a process of its own"
    assert {pid: shown_in_ps(pid) for pid in named} == named


def test_a_normal_down_leaves_no_error_or_warning_in_any_log(any_sandbox: Sandbox) -> None:
    """With the relays and the query's consumer at work (a purchase replicated), and on the
    sandbox's log also a reader of our own held in a long-poll on the bus, which is
    answered, with no events, as the bus stops."""
    sandbox = any_sandbox
    one_purchase(sandbox)
    state, pids = sandbox.state, sandbox.pids()
    held = HeldLongPoll(state) if state.bus.backend == "log" else None
    assert held is None or held.waiting(), "held by the bus: nothing new to answer with"

    sandbox.run("down", check=True)

    assert wait_gone(pids) == [], "every process of the sandbox has ended"
    alarms = {log.name: lines for log in log_files(state) if (lines := alarming_lines(log))}
    assert alarms == {}
    if held is not None:
        status, page = held.answer()
        assert status == 200, "answered by the stopping bus, not cut off"
        assert page["events"] == [] and page["head"] == held.head


def shown_in_ps(pid: int) -> str:
    """The command line `ps` shows for a process (its arguments joined by spaces)."""
    return (PROC / str(pid) / "cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode()


def log_files(state: State) -> list[Path]:
    """Every service's log (each nats-server node's too) and the supervisor's."""
    return [*(Path(service.log) for service in state.services.values()),
            SandboxPaths(Path(state.sandbox)).supervisor_log]


def alarming_lines(log: Path) -> list[str]:
    """Lines at WARNING or above, tracebacks, and nats-server's errors. msshop's lines are
    "HH:MM:SS.mmm <who> <LEVEL> <message>"."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        words = line.split(" ", 3)
        if ((len(words) > 2 and words[2] in MSSHOP_ALARMS) or line.startswith("Traceback")
                or any(mark in line for mark in NATS_ALARMS)):
            found.append(line)
    return found


class HeldLongPoll:
    """GET /events after the head, with a long wait, as the sandbox's owner: held open by
    the bus (nothing new comes) until it stops, in a thread of its own."""

    WAIT_MS = 20_000
    SETTLE = 0.5  # seconds for the request to reach the bus and be held, before `down`

    def __init__(self, state: State) -> None:
        bus = state.services["bus"]
        health = probe(state.host, bus.port, timeout=5)
        assert health is not None, "the bus answers"
        self.head: int = health["head"]
        self._result: tuple[int, dict[str, Any]] | BaseException | None = None
        self._thread = threading.Thread(
            target=self._ask, args=(state.host, bus.port, bearer(state.token)), daemon=True)
        self._thread.start()
        time.sleep(self.SETTLE)

    def _ask(self, host: str, port: int, headers: dict[str, str]) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=self.WAIT_MS / 1000 + 5)
        try:
            conn.request("GET", f"/events?after={self.head}&wait_ms={self.WAIT_MS}",
                         headers=headers)
            answer = conn.getresponse()
            self._result = (answer.status, json.loads(answer.read()))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._result = exc
        finally:
            conn.close()

    def waiting(self) -> bool:
        return self._thread.is_alive()

    def answer(self) -> tuple[int, dict[str, Any]]:
        self._thread.join(self.WAIT_MS / 1000 + 5)
        result = self._result
        if not isinstance(result, tuple):
            raise AssertionError(f"the held long-poll got no answer: {result!r}")
        return result
