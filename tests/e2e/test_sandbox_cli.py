"""The sandbox through the real `msshop` command: up, status, down, and every way it can go
wrong — each a clear line, the right exit code, and nothing left behind."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from msshop.runtime.orchestrator.state import SandboxPaths, is_running, pid_alive, read_state
from tests.cli_in_process import msshop_in_process
from tests.conftest import Sandbox, msshop, sandbox_env, start_sandbox, stop_sandbox, wait_gone


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0].removeprefix("error: ")


def assert_nothing_left(root: Path) -> None:
    paths = SandboxPaths(root)
    assert not paths.state_file.exists()
    assert not is_running(paths)


def test_up_seed_status_down_from_any_directory(tmp_path: Path) -> None:
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    root = tmp_path / "my-sandbox"
    env = sandbox_env(root)

    up = msshop("up", "--detach", env=env, cwd=elsewhere, check=True)
    assert f"sandbox {root} is up in" in up.stdout
    state = read_state(SandboxPaths(root))
    assert state is not None
    pids = [state.supervisor_pid, *(s.pid for s in state.services.values() if s.pid)]
    try:
        msshop("seed", "--users", "30", "--products", "10", "--orders", "300", env=env,
               cwd=elsewhere, check=True)
        status = json.loads(msshop("status", "--json", env=env, cwd=elsewhere, check=True).stdout)
    finally:
        down = msshop("down", env=env, cwd=elsewhere)
    assert down.returncode == 0, down.stderr
    assert f"sandbox {root} is down" in down.stdout

    assert status["running"] is True and status["sandbox"] == str(root)
    by_name = {s["name"]: s for s in status["services"]}
    assert list(by_name) == ["bus", "users", "products", "orders", "query"]
    for name, service in by_name.items():
        assert service["status"] == "running" and service["health"] == "ok"
        assert service["db"] == str(root / "data" / name / f"{name}.db")
        assert isinstance(service["pid"], int) and isinstance(service["port"], int)
    assert by_name["users"]["rows"] == {"users": 30}
    assert by_name["products"]["rows"] == {"products": 10}
    assert by_name["orders"]["rows"] == {"orders": 300}
    assert by_name["bus"]["rows"] == {"events": 340}
    for name in ("users", "products", "orders"):
        assert set(by_name[name]["outbox"]) >= {"pending", "error"}
    assert by_name["bus"]["head"] <= 340
    assert set(by_name["query"]["consumer"]) >= {"position", "bus_head", "behind",
                                                 "dead_letters"}

    assert wait_gone(pids) == []
    assert_nothing_left(root)
    assert not (elsewhere / "sandbox").exists(), "nothing is created in the working directory"
    assert sorted(p.name for p in (root / "data").glob("*/*.db")) == [
        "bus.db", "orders.db", "products.db", "query.db", "users.db"]


def test_up_while_running_is_refused_and_the_sandbox_keeps_running(sandbox: Sandbox) -> None:
    pid = sandbox.state.supervisor_pid
    result = sandbox.run("up", "--detach")
    assert result.returncode == 1
    assert one_error_line(result) == (
        f"a sandbox is already running in {sandbox.root} (supervisor pid {pid}); "
        "stop it with: msshop down")
    assert sandbox.run("up").returncode == 1, "the foreground form is refused the same way"
    assert all(s["health"] == "ok" for s in sandbox.status()["services"])


def free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_port_taken_by_another_program_is_named_and_nothing_starts(tmp_path: Path) -> None:
    for _ in range(50):  # a port whose two neighbours below (bus, users) are free now
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        if taken > 1026 and free(taken - 2) and free(taken - 1):
            break
        blocker.close()
    root = tmp_path / "sandbox"
    try:
        result = msshop("up", "--detach", env=sandbox_env(root, MSSHOP_BASE_PORT=str(taken - 2)))
    finally:
        blocker.close()
    assert result.returncode == 1
    assert one_error_line(result) == (
        f"port {taken} for products is taken by another program; free it, or pick other "
        "ports with --base-port N or MSSHOP_BASE_PORT=N (0 picks free ones)")
    assert_nothing_left(root)


def test_down_with_nothing_running(tmp_path: Path) -> None:
    result = msshop_in_process("down", env=sandbox_env(tmp_path / "nothing"))
    assert result.returncode == 1
    assert one_error_line(result) == (
        f"no sandbox is running in {tmp_path / 'nothing'}; start one with: msshop up --detach")


def test_unknown_service_name(sandbox: Sandbox) -> None:
    for command in ("stop", "start", "restart", "kill"):
        result = sandbox.run(command, "prodcts")
        assert result.returncode == 2
        assert one_error_line(result) == (
            "unknown service 'prodcts'; choose one of: bus, users, products, orders, query")


def test_supervisor_sigkill_leaves_no_orphans_and_a_stale_state_is_cleared(tmp_path: Path
                                                                           ) -> None:
    sandbox = start_sandbox(tmp_path / "sandbox")
    state = sandbox.state
    services = [s.pid for s in state.services.values() if s.pid]
    os.kill(state.supervisor_pid, signal.SIGKILL)
    assert wait_gone([state.supervisor_pid, *services], timeout=5) == [], "orphans survived"
    assert SandboxPaths(sandbox.root).state_file.exists(), "the crash left its state file"

    status = sandbox.run("status")
    assert status.returncode == 1
    assert one_error_line(status) == (
        f"no sandbox is running in {sandbox.root} (cleared the state file of a crashed run: "
        f"supervisor pid {state.supervisor_pid} is gone); start one with: msshop up --detach")
    assert_nothing_left(sandbox.root)


def test_up_after_a_crash_cleans_up_and_says_so(tmp_path: Path) -> None:
    sandbox = start_sandbox(tmp_path / "sandbox")
    state = sandbox.state
    os.kill(state.supervisor_pid, signal.SIGKILL)
    wait_gone([state.supervisor_pid, *(s.pid for s in state.services.values() if s.pid)])
    try:
        again = sandbox.run("up", "--detach", check=True)
        assert (f"cleared the state file of a crashed sandbox (supervisor pid "
                f"{state.supervisor_pid} is gone)") in again.stdout
        assert all(s["health"] == "ok" for s in sandbox.status()["services"])
    finally:
        stop_sandbox(sandbox)


def test_sigterm_to_a_detached_supervisor_stops_everything(sandbox: Sandbox) -> None:
    pids = sandbox.pids()
    os.kill(sandbox.state.supervisor_pid, signal.SIGTERM)
    assert wait_gone(pids) == []
    assert_nothing_left(sandbox.root)


def test_kill_is_reported_not_hidden_and_start_brings_it_back(sandbox: Sandbox) -> None:
    old_pid = sandbox.state.services["products"].pid
    killed = sandbox.run("kill", "products", check=True)
    assert "products killed by SIGKILL; the supervisor reports it crashed" in killed.stdout
    assert old_pid is not None and not pid_alive(old_pid)
    products = next(s for s in sandbox.status()["services"] if s["name"] == "products")
    assert (products["status"], products["exit"], products["pid"]) == (
        "crashed", "killed by SIGKILL", None)
    log = sandbox.run("logs", "supervisor", check=True).stdout
    assert "products killed by SIGKILL; it stays down until: msshop start products" in log

    buy = sandbox.run("buy", "--user", "1", "--product", "1")
    assert buy.returncode == 1
    assert one_error_line(buy).startswith("products is down: connection refused at ")

    again = sandbox.run("kill", "products")
    assert one_error_line(again) == (
        "products is not running (crashed); start it with: msshop start products")
    started = sandbox.run("start", "products", check=True)
    assert started.stdout.startswith("products started, healthy in ")
    assert all(s["health"] == "ok" for s in sandbox.status()["services"])


def test_stop_start_restart(sandbox: Sandbox) -> None:
    assert sandbox.run("stop", "orders", check=True).stdout == "orders stopped\n"
    orders = next(s for s in sandbox.status()["services"] if s["name"] == "orders")
    assert (orders["status"], orders["health"]) == ("stopped", "-")
    again = sandbox.run("stop", "orders")
    assert one_error_line(again) == (
        "orders is not running (stopped); start it with: msshop start orders")
    sandbox.run("start", "orders", check=True)
    twice = sandbox.run("start", "orders")
    assert one_error_line(twice).startswith("orders is already running (pid ")
    before = sandbox.state.services["users"].pid
    sandbox.run("restart", "users", check=True)
    assert sandbox.state.services["users"].pid != before
    assert all(s["health"] == "ok" for s in sandbox.status()["services"])


def test_a_service_that_cannot_start_is_named_and_nothing_is_left(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    # a directory where the file should be
    (root / "data" / "products" / "products.db").mkdir(parents=True)
    result = msshop("up", "--detach", env=sandbox_env(root))
    assert result.returncode == 1
    message = one_error_line(result)
    assert message.startswith("products failed to start (exited with code 3): ")
    assert message.endswith("; see: msshop logs products")
    assert_nothing_left(root)
    logged = msshop("logs", "products", env=sandbox_env(root))
    assert "unable to open database file" in logged.stdout


def test_seed_twice_adds_nothing_and_reset_starts_clean(sandbox: Sandbox) -> None:
    args = ("seed", "--users", "40", "--products", "12", "--orders", "500", "--seed", "7")
    first = sandbox.run(*args, check=True).stdout
    second = sandbox.run(*args, check=True).stdout
    assert "orders         500 created,        0 already there" in first
    assert "orders           0 created,      500 already there" in second
    rows = {s["name"]: s["rows"] for s in sandbox.status()["services"]}
    assert (rows["users"], rows["products"], rows["orders"]) == (
        {"users": 40}, {"products": 12}, {"orders": 500})
    assert rows["bus"] == {"events": 40 + 12 + 500}, "each write was published exactly once"
    client = sandbox.client()
    client.request("users", "POST", "/users", {"email": "extra@example.com", "name": "X"})
    reset = sandbox.run("seed", "--reset", "--users", "5", "--products", "3", "--orders", "9",
                        check=True)
    assert "reset: every service's data was deleted" in reset.stdout
    rows = {s["name"]: s["rows"] for s in sandbox.status()["services"]}
    assert (rows["users"], rows["products"], rows["orders"]) == (
        {"users": 5}, {"products": 3}, {"orders": 9})
    assert rows["bus"]["events"] <= 5 + 3 + 9, "the reset emptied the event log too"


def test_shop_commands(sandbox: Sandbox) -> None:
    ada = sandbox.run("signup", "--email", "ada@example.com", "--name", "Ada", check=True)
    assert ada.stdout.strip() == "user 1: Ada <ada@example.com>"
    dup = sandbox.run("signup", "--email", "ada@example.com", "--name", "Ada")
    assert (dup.returncode, one_error_line(dup)) == (1, "email ada@example.com is already "
                                                        "signed up")
    sandbox.client().request("products", "POST", "/products",
                             {"title": "Wool beanie", "price": 19.5, "stock": 3})
    listing = sandbox.run("products", check=True).stdout
    assert "Wool beanie" in listing and "19.50" in listing
    bought = sandbox.run("buy", "--user", "1", "--product", "1", "--quantity", "2", check=True)
    assert bought.stdout.splitlines() == [
        "order 1 placed: user 1 bought 2 x product 1 at 19.50 = 39.00",
        "event OrderPlaced is at bus position 3; read your write with: msshop query --user 1 "
        "--after 3"]
    unknown = sandbox.run("buy", "--user", "42", "--product", "1")
    assert (unknown.returncode, one_error_line(unknown)) == (1, "user_id 42: no such user")


def test_logs_show_each_service_and_refuse_unknown_names(sandbox: Sandbox) -> None:
    everything = sandbox.run("logs", "-n", "0", check=True).stdout
    for name in ("bus", "users", "products", "orders", "query"):
        assert f" {name} INFO {name} serving on 127.0.0.1:" in everything
    assert " supervisor INFO users ready on http://127.0.0.1:" in everything
    bad = sandbox.run("logs", "nope")
    assert one_error_line(bad) == (
        "unknown log 'nope'; choose one of: bus, users, products, orders, query, supervisor")


class LineReader:
    """Reads a child's output in a thread, so a test can wait for a line with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen = ""
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while needle not in self.seen:
            remaining = deadline - time.monotonic()
            try:
                self.seen += self.lines.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                raise AssertionError(f"did not see {needle!r} in:\n{self.seen}") from None
        return self.seen


def foreground_up(root: Path) -> subprocess.Popen[str]:
    """`msshop up` in the foreground, as a person runs it in a terminal."""
    return subprocess.Popen([sys.executable, "-m", "msshop", "up"], env=sandbox_env(root),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_foreground_up_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    process = foreground_up(root)
    try:
        assert process.stdout is not None
        reader = LineReader(process.stdout)
        reader.wait_for("is up in", timeout=30)
        state = read_state(SandboxPaths(root))
        assert state is not None and state.mode == "foreground"
        pids = [s.pid for s in state.services.values() if s.pid]
        assert len(pids) == 5
        # the supervisor streams the services' log lines while it runs
        reader.wait_for("products INFO Application startup complete", timeout=10)
        process.send_signal(signal.SIGINT)
        process.wait(30)
        reader.thread.join(10)
        err = process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "sandbox stopped" in reader.wait_for("sandbox stopped", timeout=1)
    assert wait_gone(pids) == []
    assert_nothing_left(root)


def test_foreground_supervisor_killed_leaves_no_orphans(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    process = foreground_up(root)
    try:
        assert process.stdout is not None
        LineReader(process.stdout).wait_for("is up in", timeout=30)
        state = read_state(SandboxPaths(root))
        assert state is not None
        process.kill()
        process.wait(10)
        assert wait_gone([s.pid for s in state.services.values() if s.pid], timeout=5) == []
    finally:
        if process.poll() is None:
            process.kill()


def test_a_sandbox_directory_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    root = tmp_path / "a-file" / "sandbox"
    for args in (("up", "--detach"), ("up",)):
        result = msshop_in_process(*args, env=sandbox_env(root))
        assert result.returncode == 1
        assert one_error_line(result) == (
            f"cannot create sandbox directory {root}: Not a directory; choose another with "
            "--sandbox DIR or MSSHOP_SANDBOX")


def test_logs_follow_prints_new_lines_and_ends_with_the_sandbox(sandbox: Sandbox) -> None:
    with sandbox.background("logs", "supervisor", "-f", "-n", "1") as follow:
        assert follow.stdout is not None
        reader = LineReader(follow.stdout)
        reader.wait_for(" ready on ", timeout=10)  # the last line so far
        sandbox.run("restart", "users", check=True)
        reader.wait_for("supervisor INFO users stopped", timeout=10)
        reader.wait_for(f"(pid {sandbox.state.services['users'].pid})", timeout=10)
        sandbox.run("down", check=True)
        assert follow.wait(10) == 0, "--follow ends when the sandbox stops"
