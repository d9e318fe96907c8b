"""Issue 28: experiments from the dashboard. The page asks; the supervisor runs `msshop
experiment NAME --sandbox` on this very sandbox, one at a time; every look carries the run's
progress (what it says, each second's answered and failed by strategy), then its verdict;
past runs are listed and each report opens from the dashboard. What may not be asked is
one line. All against real processes: the sandbox, its supervisor, the experiment."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import Sandbox, running_sandbox, start_sandbox, wait_gone
from tests.e2e.test_dashboard import ask, csrf_of, logged_in, login_of, status_of

RUN_WAIT = 120.0  # seconds a 3-second run has to start, run, recover and be checked


@pytest.fixture(scope="module")
def with_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("runs") / "sandbox", MSSHOP_UI="1") as sandbox:
        yield sandbox


def start(address: dict[str, Any], session: str, csrf: str, body: str
          ) -> tuple[int, dict[str, Any]]:
    port = urlsplit(address["url"]).port
    answer = ask(address, "POST", "/experiment", {
        "Cookie": session, "Origin": f"http://127.0.0.1:{port}", "x-csrf-token": csrf,
        "content-type": "application/json"}, body=body)
    return answer.status, json.loads(answer.read())


def until_ended(address: dict[str, Any], session: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_WAIT
    while True:
        run = json.loads(ask(address, "GET", "/state", {"Cookie": session}).read())[
            "experiment"]
        if run is not None and run["id"] == run_id and run["state"] != "running":
            return dict(run)
        assert time.monotonic() < deadline, run
        time.sleep(0.5)


def test_a_run_from_the_page_fills_in_then_gives_its_verdict(with_ui: Sandbox) -> None:
    address = login_of(with_ui)
    session = logged_in(address)
    csrf = csrf_of(address, session)
    listed = json.loads(ask(address, "GET", "/experiments", {"Cookie": session}).read())
    offered = {s["name"]: s for s in listed["catalogue"]}
    assert offered["query-crash"]["workload"] == "reads" and listed["runs"] == []
    status, said = start(address, session, csrf,
                         json.dumps({"scenario": "query-crash", "seconds": 3}))
    assert status == 200 and said["done"].endswith("-query-crash started"), said
    run_id = said["done"].split()[1]
    status, again = start(address, session, csrf, json.dumps({"scenario": "slow-users"}))
    assert status == 409 and "one at a time" in again["error"], again
    run = until_ended(address, session, run_id)
    assert run["state"] == "ended" and run["verdict"] == "valid", run
    assert run["strategies"] == ["direct-call", "replicated"] and len(run["seconds"]) == 3
    assert any("query killed" in line for line in run["said"]), run["said"]
    assert all(s["status"] == "running" for s in with_ui.status()["services"]), \
        "every fault healed, the sandbox left running"
    assert status_of(with_ui, "ui")["status"] == "running"
    runs = json.loads(ask(address, "GET", "/experiments", {"Cookie": session}).read())["runs"]
    assert [(r["id"], r["verdict"], r["report"]) for r in runs] == [(run_id, "valid", True)]
    page = ask(address, "GET", f"/report?id={run_id}", {"Cookie": session})
    assert page.status == 200 and b"query-crash" in page.read()
    policy = str(page.getheader("content-security-policy"))
    assert policy.startswith("sandbox allow-scripts;"), "its own origin: no cookie, no API"
    assert ask(address, "GET", f"/report?id={run_id}").status == 401


def test_what_may_not_be_run_is_one_line(with_ui: Sandbox) -> None:
    address = login_of(with_ui)
    session = logged_in(address)
    csrf = csrf_of(address, session)
    for body, status, words in (
            ('{"scenario": "../etc"}', 409, "not a scenario's name"),
            ('{"scenario": "query-crash", "seconds": 1}', 409, "seconds must be from 3"),
            ('{"scenario": "query-crash", "seconds": "ten"}', 422, "an experiment is"),
            ("run it", 422, "an experiment is"),
            ("{}", 422, "an experiment is")):
        answered, said = start(address, session, csrf, body)
        assert answered == status and words in said["error"], (body, said)
        assert "\n" not in said["error"]
    assert start(address, session, "guessed", '{"scenario": "query-crash"}')[0] == 403
    # a name the supervisor takes but msshop has no scenario of: the run fails, and says why
    status, said = start(address, session, csrf, '{"scenario": "nope"}')
    assert status == 200, said
    run = until_ended(address, session, said["done"].split()[1])
    assert run["state"] == "failed" and "no experiment named 'nope'" in run["error"], run
    missing = ask(address, "GET", "/report?id=nothing", {"Cookie": session})
    assert missing.status == 404 and b"no experiment run" in missing.read()


def test_a_run_ends_with_a_supervisor_killed_mid_run(tmp_path: Path) -> None:
    """SIGKILL to the supervisor while an experiment runs: the kernel ends the run with
    it, as it ends the services, and nothing of the sandbox is left running."""
    sandbox = start_sandbox(tmp_path / "sandbox", MSSHOP_UI="1")
    left: list[int] = sandbox.pids()
    try:
        address = login_of(sandbox)
        session = logged_in(address)
        status, said = start(address, session, csrf_of(address, session),
                             json.dumps({"scenario": "slow-users", "seconds": 60}))
        assert status == 200, said
        runs = [pid for pid in running_pids() if f"--sandbox {sandbox.root}" in
                command_line(pid) and " experiment slow-users " in command_line(pid)]
        assert len(runs) == 1, runs
        left += runs
        deadline = time.monotonic() + RUN_WAIT  # killed once its load runs, not while it
        while not json.loads(ask(address, "GET", "/state", {"Cookie": session}).read())[
                "experiment"]["seconds"]:  # sets up (then it would end by itself)
            assert time.monotonic() < deadline
            time.sleep(0.2)
        os.kill(sandbox.state.supervisor_pid, signal.SIGKILL)
        assert wait_gone(left, timeout=15) == [], "the run (or a service) outlived it"
    finally:
        for pid in left:  # never leave a process behind a failed test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def running_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""
