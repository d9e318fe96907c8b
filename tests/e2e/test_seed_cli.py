"""`msshop seed` through the real command: its --json report, --wait until the read model
has caught up (then verify is clean), what it says when replication is still behind (the
read model cut off from the bus on purpose, or the query service stopped), --wait that
cannot end well (a timeout: exit 3; a service stopped: exit 1, at once), and bad input
(one line, exit 2, before anything is sent)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.cli_in_process import msshop_in_process
from tests.conftest import Sandbox, sandbox_env

SMALL = ("--users", "12", "--products", "5", "--orders", "300", "--seed", "9")
WRITTEN = 12 + 5 + 300  # events: one per user, product and order


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0].removeprefix("error: ")


def seeded(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_json_report_then_wait_until_caught_up_and_verify_is_clean(sandbox: Sandbox) -> None:
    first = sandbox.run("seed", *SMALL, "--json", "--wait", check=True)
    report = seeded(first)
    assert set(report) == {"plan", "users", "products", "orders", "seconds", "replication"}
    assert report["plan"] == {"users": 12, "products": 5, "orders": 300, "seed": 9}
    for kind, count in (("users", 12), ("products", 5), ("orders", 300)):
        assert set(report[kind]) == {"created", "existing", "seconds", "rate"}
        assert (report[kind]["created"], report[kind]["existing"]) == (count, 0)
        assert report[kind]["seconds"] > 0 and report[kind]["rate"] > 0
    replication = report["replication"]
    assert (replication["caught_up"], replication["state"], replication["backlog"],
            replication["behind"], replication["missing"], replication["down"]) == (
        True, "caught-up", 0, 0, [], [])
    assert replication["bus_head"] == WRITTEN and replication["waited_ms"] > 0
    assert first.stderr == "", "progress is for a terminal: none when stderr is not one"

    again = seeded(sandbox.run("seed", *SMALL, "--json", check=True))
    assert [(again[kind]["created"], again[kind]["existing"])
            for kind in ("users", "products", "orders")] == [(0, 12), (0, 5), (0, 300)]
    assert again["replication"]["waited_ms"] == 0, "not asked to wait"

    waited = sandbox.run("seed", *SMALL, "--wait", check=True)
    assert waited.stdout.splitlines()[-1].startswith("the read model caught up in ")
    assert waited.stdout.splitlines()[-1].endswith(f" s, at bus position {WRITTEN}")
    verified = sandbox.run("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_read_model_behind_is_named_and_a_wait_for_it_times_out(sandbox: Sandbox) -> None:
    # the query service cut off from the bus: every event written stays behind it
    sandbox.run("chaos", "query", "--to", "bus", "--error-rate", "1", check=True)
    result = sandbox.run("seed", *SMALL, check=True)
    said = " ".join(result.stdout.split())  # the sentence, however it wrapped
    found = re.search(r"replication is catching up, the read model does not have every "
                      r"event yet: (.*); wait for it with: msshop wait --for caught-up \(or "
                      r"seed with --wait\)$", said)
    assert found, result.stdout
    behind = re.search(r"(?:^|; )query: ([\d,]+) events behind(?:;|$)", found[1])
    assert behind, found[1]
    # a long-poll open before the fault may have brought the users' (and products')
    # events; no orders: those come in later requests, which the fault refuses
    assert WRITTEN - 12 - 5 <= int(behind[1].replace(",", "")) <= WRITTEN

    report = seeded(sandbox.run("seed", *SMALL, "--json", check=True))["replication"]
    assert (report["caught_up"], report["state"], report["down"], report["bus_head"]) == (
        False, "catching-up", [], WRITTEN)
    assert report["backlog"] == 0 and WRITTEN - 12 - 5 <= report["behind"] <= WRITTEN
    assert f"query: {report['behind']:,} events behind" in report["missing"]

    timed_out = sandbox.run("seed", *SMALL, "--wait", "--timeout", "1")
    assert timed_out.returncode == 3
    message = one_error_line(timed_out)
    assert message.startswith("the read model did not catch up within 1 s: ")
    assert "query: " in message and message.endswith(
        "; see: msshop status, or wait longer with: msshop wait --for caught-up --timeout S")

    sandbox.run("chaos", "query", "--to", "bus", "--clear", check=True)
    healed = seeded(sandbox.run("seed", *SMALL, "--json", "--wait", check=True))
    assert healed["replication"]["state"] == "caught-up"
    assert sandbox.run("verify").returncode == 0


def test_with_the_query_service_stopped_seed_says_so_and_wait_fails_at_once(
        sandbox: Sandbox) -> None:
    sandbox.run("stop", "query", check=True)
    result = sandbox.run("seed", *SMALL, check=True)
    said = " ".join(result.stdout.split())
    assert re.search(r"replication cannot catch up: query: stopped \(the bus is at position "
                     r"[\d,]+\); start it with: msshop start query, then wait with: msshop "
                     r"wait --for caught-up$", said), result.stdout

    report = seeded(sandbox.run("seed", *SMALL, "--json", check=True))["replication"]
    assert (report["caught_up"], report["state"], report["behind"], report["down"],
            report["missing"]) == (False, "service-down", None, ["query"], ["query: stopped"])

    # nobody will start it while we wait: --wait ends at once instead of waiting 600 s
    waited = sandbox.run("seed", *SMALL, "--wait", timeout=60)
    assert waited.returncode == 1
    assert one_error_line(waited) == ("the read model cannot catch up: query: stopped; start "
                                      "it with: msshop start query")
    as_json = sandbox.run("seed", *SMALL, "--wait", "--json", timeout=60)
    assert as_json.returncode == 1
    assert seeded(as_json)["replication"]["state"] == "service-down"

    sandbox.run("start", "query", check=True)
    assert seeded(sandbox.run("seed", *SMALL, "--json", "--wait", check=True))[
        "replication"]["caught_up"]


def test_bad_input_is_one_line_and_exit_2_before_anything_is_sent(tmp_path: Path) -> None:
    env = sandbox_env(tmp_path / "sandbox")  # none runs: each is refused before that matters
    refused = {
        ("--orders", "-5"): "seed.orders = -5 (from option for seed.orders) is not allowed: "
                            "use an integer from 0 to 100000000",
        ("--users", "0"): "seed.users = 0 (from option for seed.users) is not allowed: use "
                          "an integer from 1 to 10000000",
        ("--products", "-1"): "seed.products = -1 (from option for seed.products) is not "
                              "allowed: use an integer from 1 to 10000000",
        ("--timeout", "5"): "--timeout is how long --wait waits: give --wait too",
        ("--wait", "--timeout", "-1"): "--timeout -1 is out of range; give seconds from 0 to "
                                       "3600, e.g. --timeout 30",
        ("--wait", "--timeout", "nan"): "--timeout nan is out of range; give seconds from 0 "
                                        "to 3600, e.g. --timeout 30",
    }
    for args, message in refused.items():
        result = msshop_in_process("seed", *args, env=env)
        assert (result.returncode, result.stdout) == (2, ""), args
        assert one_error_line(result) == message, args
