"""What the commands print: within 80 columns with no trailing spaces, and with `--json` one
document (or JSON lines) in the shape docs/cli.md gives, for every command that has it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from msshop.cli import app
from tests.cli_in_process import msshop_in_process
from tests.conftest import Sandbox, running_sandbox, sandbox_env, stop_sandbox

NARROW = {"COLUMNS": "80"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running_sandbox(tmp_path_factory.mktemp("output") / "sandbox") as running:
        running.run("seed", "--users", "30", "--products", "12", "--orders", "300",
                    check=True)
        running.run("verify", check=True)  # caught up: every answer below is settled
        yield running


def fits(text: str, width: int = 80) -> None:
    lines = text.splitlines()
    assert lines, "it printed something"
    longest = max(lines, key=len)
    assert len(longest) <= width, f"{len(longest)} columns: {longest!r}"
    assert [line for line in lines if line != line.rstrip()] == [], "no trailing spaces"


NARROW_COMMANDS = [
    ["status"],
    ["products", "--limit", "12"],
    ["query", "--user", "1"],
    ["query", "--user", "1", "--strategy", "direct-call"],
    ["query", "--user", "1", "--strategy", "direct-call", "--fanout", "naive"],
    ["query", "--user", "1", "--strategy", "monolith"],
    ["compare", "--user", "1"],
    ["events", "--limit", "20"],
    ["deadletters"],
    ["traces"],
    ["trace", "last"],
    ["verify"],
    ["buy", "--user", "2", "--product", "3", "--trace"],
    ["chaos", "users", "--latency", "3", "--error-rate", "0.01"],
    ["chaos", "users", "--clear"],
]


@pytest.mark.parametrize("args", NARROW_COMMANDS, ids=" ".join)
def test_every_main_command_fits_80_columns(shop: Sandbox, args: list[str]) -> None:
    result = shop.run(*args, env_extra=NARROW, check=True)
    fits(result.stdout)


def test_every_commands_help_fits_80_columns(tmp_path: Path) -> None:
    env = sandbox_env(tmp_path / "none", **NARROW)
    fits(msshop_in_process("--help", env=env, check=True).stdout)
    for name in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        fits(msshop_in_process(name, "--help", env=env, check=True).stdout)


def parsed(shop: Sandbox, *args: str) -> Any:
    result = shop.run(*args, "--json", check=True)
    return json.loads(result.stdout)


def test_reads_print_one_json_document(shop: Sandbox) -> None:
    page = parsed(shop, "products", "--limit", "5")
    assert [p["id"] for p in page["products"]] == [1, 2, 3, 4, 5] and page["next_after"] == 5

    compared = parsed(shop, "compare", "--user", "1")
    assert compared["user_id"] == 1
    rows = {row["strategy"]: row for row in compared["strategies"]}
    assert set(rows) == {"monolith", "direct-call (batched)", "direct-call (naive)",
                         "replicated"}
    assert all(row["equal"] for name, row in rows.items() if name != "monolith")
    touched = {service: files for service, files in rows["replicated"]["databases"].items()
               if files}
    assert touched == {"query": ["query.db"]}, "replicated opened only the query service's file"

    verified = parsed(shop, "verify")
    assert verified["ok"] is True and verified["differences"] == {}
    assert verified["users"] >= 30 and verified["position"] == verified["head"]

    letters = parsed(shop, "deadletters")
    assert letters == {"count": 0, "dead_letters": []}

    shown = parsed(shop, "trace", "last")
    assert len(shown["trace_id"]) == 32 and shown["spans"][0]["trace_id"] == shown["trace_id"]


def test_events_print_one_json_object_a_line(shop: Sandbox) -> None:
    result = shop.run("events", "--limit", "40", "--json", check=True)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [event["position"] for event in lines] == list(range(1, 41))
    # the users and products relays are not ordered against each other: either comes first
    first = next(event for event in lines if event["type"] == "UserSignedUp")
    assert first["source"] == "users" and first["aggregate_type"] == "user"
    assert first["data"]["id"] == first["aggregate_id"]


def test_writes_print_their_result_as_json(shop: Sandbox) -> None:
    signed = parsed(shop, "signup", "--email", "json@example.com", "--name", "Jay Son")
    assert signed["user"]["email"] == "json@example.com" and "journey" not in signed
    user = signed["user"]["id"]

    bought = parsed(shop, "buy", "--user", str(user), "--product", "2", "--quantity", "3")
    assert bought["created"] is True
    assert bought["order"]["user_id"] == user and bought["order"]["quantity"] == 3
    assert bought["order"]["event"]["type"] == "OrderPlaced"

    followed = parsed(shop, "buy", "--user", str(user), "--product", "4", "--trace")
    journey = followed["journey"]
    assert journey["applied"] is True and journey["lag_ms"] > 0
    assert {span["service"] for span in journey["spans"]} >= {"cli", "orders", "query"}

    traced = parsed(shop, "signup", "--email", "traced@example.com", "--name", "T", "--trace")
    assert traced["journey"]["applied"] is True


def test_service_commands_print_what_they_did(sandbox: Sandbox) -> None:
    assert parsed(sandbox, "stop", "products") == {
        "service": "products", "action": "stopped", "status": "stopped", "ready_ms": None,
        "can": None, "exit": None}
    started = parsed(sandbox, "start", "products")
    assert started["action"] == "started" and started["status"] == "running"
    assert started["ready_ms"] > 0
    assert parsed(sandbox, "restart", "orders")["action"] == "restarted"
    killed = parsed(sandbox, "kill", "users")
    assert (killed["action"], killed["status"], killed["exit"]) == (
        "killed", "crashed", "killed by SIGKILL")
    replayed = parsed(sandbox, "replay", "query")
    assert replayed["position"] == replayed["events"]
    down = parsed(sandbox, "down")
    assert down["sandbox"] == str(sandbox.root) and "query" in down["stopped"]


def test_trace_json_and_export_are_one_or_the_other(shop: Sandbox) -> None:
    result = shop.run("trace", "last", "--json", "--export", "mermaid")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: --json prints the spans as msshop keeps them")


def test_up_prints_where_everything_runs_and_never_the_token(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "sandbox", sandbox_env(tmp_path / "sandbox"))
    try:
        up = parsed(sandbox, "up", "--detach", "--wait", "caught-up")
        token = sandbox.state.token
        assert up["sandbox"] == str(sandbox.root) and up["bus"] == "log"
        assert [s["name"] for s in up["services"]] == ["bus", "users", "products", "orders",
                                                      "query"]
        assert all(s["pid"] and s["url"].startswith("http://127.0.0.1:") for s in up["services"])
        assert up["waited"]["reached"] is True and up["waited"]["condition"] == "caught-up"
        assert token not in json.dumps(up)
    finally:
        stop_sandbox(sandbox)


def test_up_json_needs_detach(tmp_path: Path) -> None:
    result = msshop_in_process("up", "--json", env=sandbox_env(tmp_path / "sandbox"))
    assert result.returncode == 2 and result.stderr.startswith("error: --json goes with --detach")
    assert not (tmp_path / "sandbox").exists(), "nothing started"


def test_the_installed_msshop_script_runs(tmp_path: Path) -> None:
    """The entry point pyproject installs (`msshop = "msshop.cli:main"`), as a person runs
    it: the other no-sandbox tests run the app in-process."""
    script = Path(sys.executable).parent / "msshop"
    assert script.exists(), "pip install -e . installs the msshop script"
    env = sandbox_env(tmp_path / "none")
    result = subprocess.run([str(script), "--help"], env=env, capture_output=True, text=True,
                            timeout=60, check=True)
    assert "Usage: msshop" in result.stdout and "seed" in result.stdout
    refused = subprocess.run([str(script), "status"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 1 and refused.stderr.startswith("error: no sandbox is running")


INVISIBLE = ("\u202e", "\u202a", "\u2066", "\u2069", "\u200b", "\u200f", "\ufeff", "\u2028")


def test_bidirectional_and_invisible_marks_in_data_are_shown_escaped(sandbox: Sandbox
                                                                     ) -> None:
    """Issue 23: a right-to-left override (U+202E) in a name reached the terminal as it
    was, turning what followed it around; every invisible mark is now shown escaped."""
    client = sandbox.client()
    user = client.signup("rtl@example.com", "Eve \u202eexe.txt\u202c \u200bSmith")
    product = client.request("products", "POST", "/products",
                             {"title": "Hat \u2066red\u2069\ufeff", "price": 5,
                              "sku": "HAT\u200f1", "stock": 2})
    client.buy(user["id"], product["id"])
    sandbox.run("wait", "--for", "caught-up", check=True)
    who = str(user["id"])
    shown: dict[str, str] = {}
    for args in (["query", "--user", who], ["query", "--user", who, "--strategy", "monolith"],
                 ["query", "--user", who, "--strategy", "direct-call"],
                 ["compare", "--user", who], ["trace", "last"], ["traces"],
                 ["products"], ["status"], ["events"], ["verify"],
                 ["buy", "--user", who, "--product", str(product["id"])],
                 ["signup", "--email", "rtl2@example.com", "--name", "\u202eagain"]):
        result = sandbox.run(*args)
        assert result.returncode == 0, (args, result.stderr)
        output = result.stdout + result.stderr
        assert not [mark for mark in INVISIBLE if mark in output], (args, output)
        shown[args[0] if args[0] != "query" else " ".join(args[-1:])] = output
    assert "Eve \\u202eexe.txt\\u202c \\u200bSmith" in shown[who]
    assert "Hat \\u2066red\\u2069\\ufeff" in shown[who]
    assert "Hat \\u2066red\\u2069\\ufeff" in shown["products"]
    assert "HAT\\u200f1" in shown["products"]
    assert "\\u202eagain" in shown["signup"]
    assert "\\u202eexe.txt" in shown["events"]
