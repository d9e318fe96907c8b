"""`msshop experiment`: every shipped scenario, squeezed to a few seconds, in a throw-away
sandbox of its own (real processes, real faults), ends `valid` with the figures that show
its point; a consumer that loses an event on purpose is caught (`invalid`, exit 1); bad
input is one line (exit 2). Nothing is left behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli_in_process import msshop_in_process
from tests.conftest import Sandbox, msshop, sandbox_env

SECONDS = "3"  # each fault then lasts 1.5 s (the scenarios' 5-15 s of 20, squeezed)


def experiment(tmp_path: Path, name: str, *args: str, backend: str = "log",
               **env: str) -> tuple[int, dict[str, Any], str]:
    """Run one; (exit code, the JSON report, stderr). Its sandbox goes in tmp_path."""
    environment = sandbox_env(tmp_path / "unused", TMPDIR=str(tmp_path),
                              MSSHOP_BUS_BACKEND=backend, **env)
    result = msshop("experiment", name, "--seconds", SECONDS, "--json", *args,
                    env=environment, timeout=120)
    assert result.stdout, result.stderr
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith("msshop-experiment-")]
    assert not leftovers, "the throw-away sandbox is removed"
    return result.returncode, json.loads(result.stdout), result.stderr


def during(report: dict[str, Any], strategy: str) -> dict[str, Any]:
    figures: dict[str, Any] = report["during_faults"][strategy]
    return figures


def test_products_outage_direct_call_fails_replicated_answers(tmp_path: Path) -> None:
    code, report, progress = experiment(tmp_path, "products-outage")
    assert code == 0 and report["outcome"]["verdict"] == "valid", report["outcome"]
    assert "products killed" in progress and "recovered" in progress
    assert [w["label"] for w in report["faults"]] == ["products killed"]
    assert during(report, "direct-call")["availability"] <= 0.4, "answers only at the edges"
    assert during(report, "replicated")["availability"] == 1.0
    assert report["outside_faults"]["direct-call"]["availability"] >= 0.9
    checked = report["outcome"]["checked"]
    assert checked["confirmed"] > 0 and checked["confirmed"] == checked["stored"] \
        == checked["replicated"]
    assert checked["verified_users"] >= 10
    assert len(report["timeline"]) == 3 and report["staleness"]["count"] == \
        checked["confirmed"]
    refused = sum(s["purchases_refused"] for s in report["timeline"])
    assert refused > 0, "a purchase needs products: refused while it is down"


def test_slow_users_slows_direct_call_only(tmp_path: Path) -> None:
    code, report, _ = experiment(tmp_path, "slow-users")
    assert code == 0, report["outcome"]
    assert during(report, "direct-call")["p50_ms"] >= 200
    assert during(report, "replicated")["p99_ms"] < 200
    assert during(report, "direct-call")["availability"] == 1.0


@pytest.mark.parametrize("backend", ["log", "nats"])
@pytest.mark.parametrize("name", ["bus-outage", "bus-pause", "partition"])
def test_without_the_bus_replicated_answers_but_grows_stale_and_loses_nothing(
        tmp_path: Path, name: str, backend: str) -> None:
    code, report, _ = experiment(tmp_path, name, backend=backend)
    assert code == 0 and report["outcome"]["verdict"] == "valid", report["outcome"]
    assert report["bus"] == backend
    assert during(report, "replicated")["availability"] == 1.0
    assert during(report, "direct-call")["availability"] == 1.0, "it never uses the bus"
    assert report["staleness"]["max"] > 500, "a purchase in the fault waits for the heal"
    assert report["outcome"]["checked"]["replicated"] == \
        report["outcome"]["checked"]["confirmed"] > 0
    behind = [s["consumer_behind"] or 0 for s in report["timeline"]]
    backlog = [s["outbox_backlog"] or 0 for s in report["timeline"]]
    assert max(behind) + max(backlog) > 0, "the backlog is seen while it builds"


def test_query_crash_takes_both_strategies_down_and_loses_nothing(tmp_path: Path) -> None:
    code, report, _ = experiment(tmp_path, "query-crash")
    assert code == 0, report["outcome"]
    assert during(report, "replicated")["availability"] < 1.0
    assert during(report, "direct-call")["availability"] < 1.0


@pytest.mark.parametrize("backend", ["log", "nats"])
def test_duplicates_and_disorder_change_nothing_in_the_read_model(tmp_path: Path,
                                                                  backend: str) -> None:
    code, report, _ = experiment(tmp_path, "duplicates", backend=backend)
    assert code == 0 and report["outcome"]["problems"] == [], report["outcome"]


def test_a_consumer_that_loses_an_event_is_caught_invalid(tmp_path: Path) -> None:
    code, report, _ = experiment(tmp_path, "products-outage",
                                 MSSHOP_TEST_CONSUMER_DROPS="3")
    outcome = report["outcome"]
    assert code == 1 and outcome["verdict"] == "invalid"
    assert any("is missing from the read model" in p for p in outcome["problems"])
    assert any(p.startswith("verify: user ") for p in outcome["problems"])
    assert outcome["checked"]["replicated"] == outcome["checked"]["confirmed"] - 1


def test_the_terminal_report_and_the_html_page(tmp_path: Path) -> None:
    env = sandbox_env(tmp_path / "unused", TMPDIR=str(tmp_path), COLUMNS="80")
    result = msshop("experiment", "products-outage", "--seconds", SECONDS, "--report",
                    str(tmp_path / "report"), env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines if str(tmp_path) not in line) <= 80, \
        "all but the lines that quote the report's path, as it is"
    assert any(line.startswith("valid") or " valid" in line for line in lines[-3:]), lines
    assert "direct-call" in result.stdout and "products killed" in result.stdout
    assert (tmp_path / "report" / "index.html").stat().st_size > 100_000
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written["scenario"] == "products-outage"


def test_bad_input_is_one_line(tmp_path: Path, shared_sandbox: Sandbox) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ntitle = "x"\nseconds = 10\n[[faults]]\nkind = "kill"\n'
                   'target = "products"\nstart = 2\nend = 5\nduration = 3\n')
    env = sandbox_env(tmp_path / "unused", TMPDIR=str(tmp_path))
    for args, says in [
        ((str(bad),), "faults[1].duration is not a field; the fields are: kind, target"),
        (("nope",), "no experiment named 'nope'; choose one of: bus-outage"),
        (("products-outage", "--seconds", "0"), "--seconds is 0; it must be from 1 to 600"),
        (("products-outage", "--rate", "-1"), "--rate is -1; it must be from 1 to 1000"),
        (("products-outage", "--bus", "kafka"), "bus.backend"),
        (("products-outage", "--sandbox", str(tmp_path / "none")), "msshop up"),
        (("products-outage", "--sandbox", str(shared_sandbox.root), "--bus", "nats"),
         "leave out --bus"),
        (("products-outage", "--report", str(bad)), "report"),
        (("products-outage", "--progress", str(tmp_path / "none" / "p.jsonl")),
         "cannot write the progress into"),
    ]:
        result = msshop_in_process("experiment", *args, env=env)
        assert result.returncode == 2 or result.returncode == 1, (args, result.stderr)
        assert says in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_in_a_running_sandbox_it_is_left_running(shared_sandbox: Sandbox,
                                                 tmp_path: Path) -> None:
    """With --progress, what it says and each second's tallies are in the file as it
    goes (what the dashboard draws while it runs)."""
    progress = tmp_path / "progress.jsonl"
    result = shared_sandbox.run("experiment", "query-crash", "--seconds", SECONDS, "--json",
                                "--sandbox", str(shared_sandbox.root),
                                "--progress", str(progress),
                                env_extra={"TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outcome"]["verdict"] == "valid"
    lines = [json.loads(line) for line in progress.read_text().splitlines()]
    said = [line["said"] for line in lines if "said" in line]
    assert said[0].startswith("query-crash: 3 s") and any("recovered" in s for s in said)
    seconds = [line for line in lines if "second" in line]
    assert [line["second"] for line in seconds] == [0, 1, 2]
    assert all(set(line["strategies"]) == {"direct-call", "replicated"} for line in seconds)
    crashed = seconds[1]["strategies"]  # query is down from 1.2 s, and while it restarts
    assert crashed["direct-call"][1] > 0 and crashed["replicated"][1] > 0
    services = shared_sandbox.status()["services"]
    assert all(s["status"] == "running" for s in services), services


def test_a_scenario_name_that_is_not_plain_is_refused_and_leaves_no_folder(tmp_path: Path
                                                                           ) -> None:
    """Issue 23: a scenario named "a/b" ran, ended in a traceback making its folder, and
    left --report's folder empty behind it. Now it is one line before anything runs."""
    scenario = tmp_path / "slash.toml"
    scenario.write_text('name = "a/b"\ntitle = "x"\nseconds = 10\n[[faults]]\nkind = "kill"\n'
                        'target = "products"\nstart = 2\nend = 5\n')
    report = tmp_path / "reports" / "slash"
    env = sandbox_env(tmp_path / "unused", TMPDIR=str(tmp_path))
    result = msshop_in_process("experiment", str(scenario), "--report", str(report), env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {scenario}: name 'a/b' is not a plain name; use letters, digits, - and _, "
        "starting with a letter or digit, at most 64, e.g. \"products-outage\""]
    assert not (tmp_path / "reports").exists() and not (tmp_path / "unused").exists()


def test_a_run_that_fails_leaves_no_empty_report_folder(tmp_path: Path) -> None:
    """The report's folder is made before the run (a bad one is said at once); a run that
    then fails, here a sandbox that cannot start in time, takes it away again."""
    report = tmp_path / "reports" / "outage"
    environment = sandbox_env(tmp_path / "unused", TMPDIR=str(tmp_path),
                              MSSHOP_STARTUP_TIMEOUT="0.001")
    result = msshop("experiment", "products-outage", "--seconds", SECONDS, "--report",
                    str(report), env=environment, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "reports").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("msshop-experiment-")]
