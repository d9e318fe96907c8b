"""`msshop wait` and `up --detach --wait` through the real command: each condition reached
on a real sandbox, each way it is not (a timeout names what was missing, exit 3; a crash
names the service, exit 1; no sandbox, exit 1), bad usage (exit 2), and --json."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.cli_in_process import msshop_in_process
from tests.conftest import Sandbox, sandbox_env


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0].removeprefix("error: ")


def test_without_a_sandbox_healthy_and_caught_up_exit_1_and_down_holds(tmp_path: Path
                                                                      ) -> None:
    env = sandbox_env(tmp_path / "sandbox")
    healthy = msshop_in_process("wait", env=env)
    assert healthy.returncode == 1 and healthy.stdout == ""
    assert one_error_line(healthy) == (f"no sandbox is running in {tmp_path / 'sandbox'}; "
                                       "start one with: msshop up --detach")
    caught_up = msshop_in_process("wait", "--for", "caught-up", "--json", env=env)
    assert caught_up.returncode == 1
    report = json.loads(caught_up.stdout)
    assert (report["condition"], report["reached"], report["outcome"]) == (
        "caught-up", False, "no-sandbox")
    assert report["missing"][0].startswith("no sandbox is running in ")
    down = msshop_in_process("wait", "--for", "down", env=env)
    # at once, but how many ms "at once" is depends on the machine's load: not asserted
    assert down.returncode == 0 and re.fullmatch(
        rf"down after \d+ ms: no sandbox runs in {re.escape(str(tmp_path / 'sandbox'))}",
        down.stdout.strip()), down.stdout
    named = json.loads(msshop_in_process("wait", "query", "--for", "down", "--json",
                                         env=env).stdout)
    assert named["reached"] and named["services"][0]["name"] == "query"


def test_bad_usage_is_one_line_and_exit_2_before_anything_starts(tmp_path: Path) -> None:
    env = sandbox_env(tmp_path / "sandbox")
    refused = {
        ("wait", "--for", "ready"): "--for 'ready' is not one of: healthy, caught-up, down",
        ("wait", "--timeout", "-1"): "--timeout -1 is out of range; give seconds from 0 to "
                                     "3600, e.g. --timeout 30",
        ("wait", "--timeout", "7200"): "--timeout 7200 is out of range; give seconds from 0 "
                                       "to 3600, e.g. --timeout 30",
        ("wait", "nope"): "unknown service 'nope'; choose one of: bus, users, products, "
                          "orders, query",
        ("up", "--wait", "caught-up"): "--wait goes with --detach (a foreground up runs "
                                       "until Ctrl-C); use: msshop up --detach --wait "
                                       "caught-up",
        ("up", "--detach", "--wait", "down"): "--wait 'down' is not one of: healthy, "
                                              "caught-up",
    }
    for args, message in refused.items():
        result = msshop_in_process(*args, env=env)
        assert (result.returncode, one_error_line(result)) == (2, message), args
    assert not (tmp_path / "sandbox").exists(), "nothing was started"


def test_healthy_and_caught_up_hold_on_a_running_sandbox(sandbox: Sandbox) -> None:
    healthy = sandbox.run("wait", check=True)
    assert healthy.stdout.startswith("healthy after ")
    assert healthy.stdout.split(": ", 1)[1].split() == [
        "bus,", "users,", "products,", "orders,", "query"]
    sandbox.run("seed", "--users", "10", "--products", "5", "--orders", "50", check=True)
    waited = sandbox.run("wait", "--for", "caught-up", "--timeout", "10", "--json",
                         check=True)
    report = json.loads(waited.stdout)
    assert (report["condition"], report["reached"], report["outcome"], report["missing"]) == (
        "caught-up", True, "reached", [])
    assert report["bus_head"] == 10 + 5 + 50 and report["timeout_s"] == 10
    by_name = {s["name"]: s for s in report["services"]}
    assert list(by_name) == ["bus", "users", "products", "orders", "query"]
    assert all(s["ready"] and s["status"] == "running" and s["health"] == "ok"
               for s in by_name.values())
    assert [by_name[name]["pending"] for name in ("users", "products", "orders")] == [0, 0, 0]
    assert (by_name["query"]["position"], by_name["query"]["behind"]) == (65, 0)
    assert 0 <= report["waited_ms"] < 10_000


def test_a_timeout_names_what_is_missing_and_exits_3(sandbox: Sandbox) -> None:
    started = time.monotonic()
    running = sandbox.run("wait", "query", "--for", "down", "--timeout", "0.5")
    assert 0.5 <= time.monotonic() - started < 5
    assert (running.returncode, one_error_line(running)) == (
        3, "not down after 0.5 s: query: running; see: msshop status")
    sandbox.run("stop", "products", check=True)
    stopped = sandbox.run("wait", "--for", "healthy", "--timeout", "0.5")
    assert (stopped.returncode, one_error_line(stopped)) == (
        3, "not healthy after 0.5 s: products: stopped; start it with: msshop start products")
    down = sandbox.run("wait", "products", "--for", "down", check=True)
    assert down.stdout.startswith("down after ") and down.stdout.strip().endswith(": products")


def test_caught_up_waits_for_outboxes_and_the_read_model(sandbox: Sandbox) -> None:
    sandbox.run("seed", "--users", "3", "--products", "3", "--orders", "3", check=True)
    sandbox.run("chaos", "query", "--to", "bus", "--error-rate", "1", check=True)
    client = sandbox.client()  # a long-poll open before the partition still answers once:
    client.signup("wake@example.com", "Wake")  # then the consumer meets the partition
    deadline = time.monotonic() + 15
    while client.health("query")["consumer"]["bus_error"] is None:
        assert time.monotonic() < deadline, "the consumer never met the partition"
        time.sleep(0.02)
    sandbox.run("buy", "--user", "1", "--product", "1", check=True)  # on the bus, not read
    behind = sandbox.run("wait", "--for", "caught-up", "--timeout", "0.5")
    assert (behind.returncode, one_error_line(behind)) == (
        3, "not caught-up after 0.5 s: query: 1 event behind; see: msshop status")
    sandbox.run("chaos", "query", "--to", "bus", "--clear", check=True)
    sandbox.run("chaos", "orders", "--to", "bus", "--error-rate", "1", check=True)
    sandbox.run("buy", "--user", "2", "--product", "2", check=True)  # stays in the outbox
    pending = sandbox.run("wait", "orders", "--for", "caught-up", "--timeout", "0.5", "--json")
    assert pending.returncode == 3
    report = json.loads(pending.stdout)
    assert (report["outcome"], report["missing"]) == (
        "timed-out", ["orders: 1 event not on the bus yet"])
    assert report["services"][0]["pending"] == 1
    with sandbox.background("wait", "--for", "caught-up", "--timeout", "20") as later:
        time.sleep(0.3)
        assert later.poll() is None, "still waiting while the event cannot leave orders"
        sandbox.run("chaos", "orders", "--to", "bus", "--clear", check=True)
        out, err = later.communicate(timeout=20)
    assert later.returncode == 0, err
    assert out.startswith("caught-up after ") and " at bus position 12: " in out


def test_a_crash_while_waiting_is_named_and_exits_1(sandbox: Sandbox) -> None:
    with sandbox.background("wait", "query", "--for", "down", "--timeout", "20") as waiting:
        time.sleep(0.3)
        sandbox.run("kill", "orders", check=True)
        healthy = sandbox.run("wait", "--timeout", "5")
        assert (healthy.returncode, one_error_line(healthy)) == (
            1, "orders: crashed (killed by SIGKILL), while waiting for healthy; start it "
               "with: msshop start orders")
        assert waiting.poll() is None, "query is not down: a crash of orders is not its"
        sandbox.run("kill", "query", check=True)
        out, err = waiting.communicate(timeout=10)
    assert waiting.returncode == 0, err
    assert out.startswith("down after ") and out.strip().endswith(": query")


def test_down_for_the_whole_sandbox_waits_for_the_supervisor(sandbox: Sandbox) -> None:
    with sandbox.background("wait", "--for", "down", "--timeout", "20", "--json") as waiting:
        time.sleep(0.3)
        assert waiting.poll() is None
        sandbox.run("down", check=True)
        out, err = waiting.communicate(timeout=10)
    assert waiting.returncode == 0, err
    report = json.loads(out)
    assert (report["condition"], report["reached"], report["services"]) == ("down", True, [])


def test_up_detach_wait_caught_up_returns_once_the_read_model_has_everything(
        sandbox: Sandbox) -> None:
    """The read model deleted while down: the new query service rebuilds it from the log;
    `up --wait caught-up` returns once it has, so a replicated answer is complete at once."""
    sandbox.run("seed", "--users", "20", "--products", "10", "--orders", "2000", check=True)
    truth = json.loads(sandbox.run("query", "--user", "1", "--strategy", "monolith", "--json",
                                   check=True).stdout)["answer"]["orders"]
    sandbox.run("down", check=True)
    for path in (sandbox.root / "data" / "query").glob("query.db*"):
        path.unlink()
    shutil.rmtree(sandbox.root / "traces", ignore_errors=True)
    up = sandbox.run("up", "--detach", "--wait", "caught-up", check=True)
    last = up.stdout.strip().splitlines()[-1]
    assert last.startswith("caught-up after ") and " at bus position 2,030: " in last
    replicated = json.loads(sandbox.run("query", "--user", "1", "--strategy", "replicated",
                                        "--json", check=True).stdout)["answer"]
    assert replicated["orders"] == truth and truth
    assert replicated["freshness"]["position"] == 2030
    healthy = sandbox.run("up", "--detach", "--wait", "healthy")
    assert healthy.returncode == 1, "already running: up's own error comes first"


def test_a_running_service_that_does_not_answer_is_not_answering_not_down(
        sandbox: Sandbox) -> None:
    pid = sandbox.state.services["query"].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # running, as the supervisor sees it; answering nothing
    try:
        result = sandbox.run("wait", "query", "--for", "healthy", "--timeout", "1.5",
                             "--json")
    finally:
        os.kill(pid, signal.SIGCONT)
    report = json.loads(result.stdout)
    assert (result.returncode, report["outcome"]) == (3, "timed-out"), report
    [query] = report["services"]
    assert (query["status"], query["health"], query["why"]) == (
        "running", "not answering", "not answering"), query
