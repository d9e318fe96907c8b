"""A program of someone else's runs as the query service (issue 24): the stand-in of
tests/programs/stand_in_query.py (standard library only), started by a real supervisor
with real processes, set by each of the three ways to name a command, and each way it
can go wrong refused in one line with nothing of the sandbox lost."""

from __future__ import annotations

import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from msshop.contracts.config import load
from msshop.contracts.credentials import service_credential
from msshop.instruments.client import Refused
from msshop.runtime.orchestrator import lifecycle
from msshop.runtime.orchestrator.state import SandboxPaths, is_running
from tests.conftest import ROOT, Sandbox, one_purchase, sandbox_env, stop_sandbox, wait_gone

PROGRAM = "tests/programs/stand_in_query.py"  # relative: it runs where `up` runs (ROOT)


def command(mode: str = "serve") -> list[str]:
    return [sys.executable, PROGRAM, mode]


def programs_of(root: Path) -> list[int]:
    """Every process that is a program given this sandbox's query directory."""
    marker = f"MSSHOP_DATA_DIR={root / 'data' / 'query'}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environ:
                found.append(int(entry.name))
    return found


def every_process_file(name: str) -> Iterator[tuple[int, bytes]]:
    """/proc/<pid>/<name> of every process this user can read."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / name).read_bytes()
            except OSError:
                continue


def up_with(root: Path, way: str, mode: str = "serve", **env: str
            ) -> tuple[Sandbox, subprocess.CompletedProcess[str]]:
    """`msshop up --detach` with the stand-in as query, named one of the three ways."""
    sandbox = Sandbox(root, sandbox_env(root, **env))
    args = ["up", "--detach"]
    if way == "flag":
        args += ["--service", f"query={shlex.join(command(mode))}"]
    elif way == "env":
        sandbox.env["MSSHOP_QUERY_COMMAND"] = shlex.join(command(mode))
    else:
        config = root.parent / "msshop.toml"
        config.write_text("[services.query]\ncommand = [" +
                          ", ".join(f'"{arg}"' for arg in command(mode)) + "]\n")
        sandbox.env["MSSHOP_CONFIG"] = str(config)
    return sandbox, sandbox.run(*args, cwd=ROOT)


@pytest.mark.parametrize("way", ["flag", "env", "config"])
def test_a_program_of_your_own_runs_as_the_query_service(tmp_path: Path, way: str) -> None:
    root = tmp_path / "sandbox"
    sandbox, started = up_with(root, way)
    try:
        assert started.returncode == 0, started.stderr
        query = next(s for s in sandbox.status()["services"] if s["name"] == "query")
        assert query["kind"] == "executable" and query["status"] == "running"
        assert query["command"] == command()
        assert query["health"] == "ok" and query["pid"] in programs_of(root)
        assert "query is your program: " in sandbox.run("status").stdout
        answer = sandbox.client().request("query", "GET", "/user-orders/7")
        assert answer["served_by"] == "stand-in" and answer["user_id"] == 7
        assert "GET /user-orders/7" in sandbox.run("logs", "query").stdout

        service_file = root / "data" / "query" / "service.json"
        assert stat.S_IMODE(service_file.stat().st_mode) == 0o600
        credential = service_credential(sandbox.state.token, "query")
        assert credential in service_file.read_text()
        secrets = [credential.encode(), sandbox.state.token.encode()]
        for log in (root / "logs").iterdir():
            assert not any(secret in log.read_bytes() for secret in secrets), log
        for what in ("cmdline", "environ"):
            for process, text in every_process_file(what):
                assert not any(secret in text for secret in secrets), (process, what)
    finally:
        pid = sandbox.state.services["query"].pid if is_running(SandboxPaths(root)) else None
        stop_sandbox(sandbox)
    assert pid is not None and wait_gone([pid], timeout=5) == []
    assert programs_of(root) == [], "down leaves no program of the sandbox running"


def test_stop_start_restart_and_kill_drive_it_like_any_service(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    sandbox, started = up_with(root, "flag")
    try:
        assert started.returncode == 0, started.stderr
        first = sandbox.state.services["query"].pid
        assert first is not None
        chaos = sandbox.run("chaos", "query", "--latency", "300")
        assert (chaos.returncode, chaos.stderr.splitlines()) == (2, [
            "error: query is a program of your own, which cannot take chaos (only msshop's "
            "services do); stop, start or kill it instead (msshop kill query)"])
        assert sandbox.run("restart", "query").returncode == 0
        second = sandbox.state.services["query"].pid
        assert second not in (None, first) and wait_gone([first], timeout=5) == []

        killed = sandbox.run("kill", "query")
        assert killed.returncode == 0, killed.stderr
        query = next(s for s in sandbox.status()["services"] if s["name"] == "query")
        assert (query["status"], query["exit"]) == ("crashed", "killed by SIGKILL")
        assert "query killed by SIGKILL" in (root / "logs" / "supervisor.log").read_text()

        assert sandbox.run("start", "query").returncode == 0
        third = sandbox.state.services["query"].pid
        assert third is not None
        assert third in programs_of(root)
        assert sandbox.run("stop", "query").returncode == 0
        assert sandbox.state.services["query"].status == "stopped"
        assert wait_gone([third], timeout=5) == [] and programs_of(root) == []

        assert sandbox.run("start", "query").returncode == 0
        assert (root / "data" / "query" / "service.json").exists()
        (root / "data" / "query" / "its-read-model").write_text("kept")
        assert lifecycle.command(load(env=sandbox.env), "reset")["ok"] is True
        assert not (root / "data" / "query" / "its-read-model").exists()
        assert sandbox.state.services["query"].status == "running"
    finally:
        stop_sandbox(sandbox)
    assert programs_of(root) == []


def test_each_bad_program_is_refused_in_one_line_and_nothing_is_lost(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    ours = Sandbox(root, sandbox_env(root))
    ours.run("up", "--detach", check=True)
    one_purchase(ours)
    stop_sandbox(ours)

    missing = ours.run("up", "--detach", "--service", "query=no-such-program-24 --fast")
    assert missing.returncode == 1
    assert missing.stderr.splitlines() == [
        "error: query's command `no-such-program-24 --fast` cannot run: no-such-program-24 "
        "is not a program on PATH; install it or fix the command (--service query=..., "
        "MSSHOP_QUERY_COMMAND or [services.query] command)"]
    assert not (root / "logs" / "query.log").exists() or "stand-in" not in \
        (root / "logs" / "query.log").read_text(), "nothing started"

    expected = {
        "exit": "error: query failed to start (exited with code 3): stand-in query: cannot "
                "open its read model: no such table; see: msshop logs query",
        "silent": "error: query did not become healthy within 1.5 s (GET /health on "
                  "127.0.0.1:{port}, the port it was given (MSSHOP_PORT): connection "
                  "refused); see: msshop logs query",
        "wrong-port": "error: query failed to start (killed by SIGKILL): query could not "
                      "start: query listens on 127.0.0.1:",
    }
    for mode, line in expected.items():
        began = time.monotonic()
        _, failed = up_with(root, "flag", mode, MSSHOP_STARTUP_TIMEOUT="1.5")
        assert failed.returncode == 1, (mode, failed.stdout)
        assert len(failed.stderr.splitlines()) == 1, failed.stderr
        port = int(failed.stderr.partition("127.0.0.1:")[2].split(",")[0] or 0)
        assert failed.stderr.startswith(line.format(port=port)), failed.stderr
        assert "Traceback" not in failed.stderr
        assert not is_running(SandboxPaths(root)) and programs_of(root) == [], mode
        assert time.monotonic() - began < 10
    given = failed.stderr.partition(", not on the port it was given, ")[2]
    assert given.startswith(tuple("0123456789")) and "(MSSHOP_PORT)" in given

    back = Sandbox(root, sandbox_env(root))
    back.run("up", "--detach", check=True)
    try:  # every service's data as it was: the purchase made before is still there
        assert [order["user_id"] for order in back.client().orders_of(1)] == [1]
        answer = back.client().user_orders(1, "replicated")
        assert not isinstance(answer, Refused) and len(answer["orders"]) == 1
    finally:
        stop_sandbox(back)


def test_a_bus_of_your_own_is_refused_before_anything_starts(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    sandbox = Sandbox(root, sandbox_env(root))
    refused = sandbox.run("up", "--detach", "--service", "bus=./my-bus")
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "error: services.bus.command = './my-bus' (from option for services.bus.command) is "
        "not allowed: use () only: a program of your own as the bus is not supported yet "
        "(it would have to check each writer's credential); run a program as users, "
        "products, orders or query"]
    assert not (root / "state.json").exists()


def test_a_program_flooding_its_log_does_not_choke_the_supervisor(tmp_path: Path) -> None:
    """Its log written as fast as it can for 3 s, in a sandbox in the foreground (whose
    live view shows every service's new lines): the supervisor shows a part and says how
    much it skipped, answers its commands meanwhile, and stops in time."""
    root = tmp_path / "sandbox"
    sandbox = Sandbox(root, sandbox_env(root))
    program = shlex.join([sys.executable, str(ROOT / PROGRAM), "flood"])
    shown = tmp_path / "terminal.txt"
    log = root / "logs" / "query.log"

    def flood_over() -> bool:
        with log.open("rb") as file:
            file.seek(max(0, log.stat().st_size - 200))
            return b"flood over" in file.read()

    with shown.open("w") as terminal:
        up = subprocess.Popen([sys.executable, "-m", "msshop", "up", "--service",
                               f"query={program}"], env=sandbox.env, stdout=terminal,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (root / "state.json").exists() or \
                sandbox.state.services["query"].status != "running":
            assert time.monotonic() < deadline and up.poll() is None, shown.read_text()
            time.sleep(0.02)
        asked = 0
        while not flood_over():
            assert time.monotonic() < deadline, "the flood lasts 3 s"
            began = time.monotonic()
            assert sandbox.run("status", "--json").returncode == 0
            assert time.monotonic() - began < 5, "the supervisor answers while flooded"
            asked += 1
        assert asked >= 1 and log.stat().st_size > 10_000_000
        stopped = sandbox.run("stop", "query")
        assert stopped.returncode == 0, stopped.stderr
        down = sandbox.run("down")
        assert down.returncode == 0, down.stderr
        assert up.wait(timeout=15) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert "bytes of this log skipped here" in shown.read_text()
    assert programs_of(root) == []
    log.unlink()  # not left on the test machine's disk


def test_what_the_program_starts_itself_stops_with_it(tmp_path: Path) -> None:
    """A shell that runs the server as its child: stop, kill and down reach both (its
    process group), and nothing is left behind."""
    root = tmp_path / "sandbox"
    sandbox = Sandbox(root, sandbox_env(root))
    shell = f"{shlex.join(command())} & wait"
    started = sandbox.run("up", "--detach", "--service", f"query=sh -c {shlex.quote(shell)}",
                          cwd=ROOT)
    try:
        assert started.returncode == 0, started.stderr
        assert len(programs_of(root)) == 2  # the shell and its server
        assert sandbox.run("stop", "query").returncode == 0
        assert wait_gone(programs_of(root), timeout=5) == []
        assert sandbox.run("start", "query").returncode == 0
        assert len(programs_of(root)) == 2
    finally:
        stop_sandbox(sandbox)
    assert wait_gone(programs_of(root), timeout=5) == []


@pytest.mark.parametrize(("given", "expected"), [
    ("query", "error: --service 'query' names no command; use --service NAME='PROGRAM "
              "ARGS', e.g. --service query='python3 d.py'"),
    ("quarry=./d", "error: --service quarry=...: unknown service 'quarry'; choose one of: "
                   "bus, users, products, orders, query"),
])
def test_a_malformed_service_flag_is_a_usage_error(tmp_path: Path, given: str,
                                                   expected: str) -> None:
    root = tmp_path / "sandbox"
    refused = Sandbox(root, sandbox_env(root)).run("up", "--detach", "--service", given)
    assert (refused.returncode, refused.stderr.splitlines()) == (2, [expected])
    assert not (root / "state.json").exists()
