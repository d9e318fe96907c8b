"""`msshop logs` through the real command: the service column or none, --since (a
duration, a clock time), --grep, --json (also with --follow), bad input in one line; and
nats-server's lines merged in time order with msshop's own."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sandbox, running_sandbox
from tests.e2e.test_sandbox_cli import LineReader

OWN_STAMP = re.compile(r"\d\d:\d\d:\d\d\.\d{3} ")
PREFIXED = re.compile(r"(\S+) +\| (.*)")


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0].removeprefix("error: ")


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox for this module's tests (they stop and start products, restart orders)."""
    with running_sandbox(tmp_path_factory.mktemp("logs") / "sandbox") as running:
        yield running


def test_each_line_after_its_service_or_alone(logged: Sandbox) -> None:
    shown = logged.run("logs", "-n", "0", check=True).stdout.splitlines()
    columns = [PREFIXED.fullmatch(line) for line in shown]
    assert all(columns), shown
    names = {m.group(1) for m in columns if m}
    assert names == {"bus", "users", "products", "orders", "query", "supervisor"}
    assert {len(line.split("|")[0]) for line in shown} == {len("supervisor") + 1}, "a column"
    raw = logged.run("logs", "-n", "0", "--no-prefix", check=True).stdout.splitlines()
    assert raw == [m.group(2) for m in columns if m]
    assert all(OWN_STAMP.match(line) for line in raw)
    assert logged.run("logs", "users", "-n", "2", "--no-prefix", check=True).stdout.count(
        "\n") == 2


def test_json_lines_carry_service_time_level_message_and_the_line(logged: Sandbox) -> None:
    printed = json_lines(logged.run("logs", "-n", "0", "--json", check=True).stdout)
    assert {tuple(sorted(line)) for line in printed} == {
        ("level", "line", "message", "service", "time")}
    times = [dt.datetime.fromisoformat(line["time"]) for line in printed]
    assert times == sorted(times), "merged by time"
    assert abs(times[-1] - dt.datetime.now().astimezone()) < dt.timedelta(minutes=5)
    ready = next(line for line in printed if " ready on " in line["line"])
    assert ready["service"] == "supervisor" and ready["level"] == "INFO"
    assert ready["line"].endswith(ready["message"])
    assert ready["message"].startswith("bus ready on http://127.0.0.1:")


def test_grep_keeps_the_lines_a_pattern_matches(logged: Sandbox) -> None:
    found = logged.run("logs", "--grep", r"serving on 127\.0\.0\.1:\d+", "--no-prefix",
                       check=True).stdout.splitlines()
    assert sorted(line.split()[1] for line in found) == sorted(
        ["bus", "users", "products", "orders", "query"])
    assert logged.run("logs", "--grep", "no such line anywhere", check=True).stdout == ""


def test_since_a_duration_or_a_clock_time(logged: Sandbox) -> None:
    if dt.datetime.now().time() > dt.time(23, 59, 50):
        pytest.skip("a clock time 'today' is ambiguous this close to midnight")
    logged.run("stop", "products", check=True)
    time.sleep(1.1 - dt.datetime.now().microsecond / 1e6)  # into the next whole second
    clock = dt.datetime.now().strftime("%H:%M:%S")
    logged.run("start", "products", check=True)
    recent = logged.run("logs", "--since", "1h", "--grep", "supervisor INFO products",
                        "--no-prefix", check=True).stdout
    assert " products stopped" in recent and " products ready on " in recent
    since_clock = logged.run("logs", "--since", clock, "--grep", "supervisor INFO products",
                             "--no-prefix", check=True).stdout
    assert " products stopped" not in since_clock and " products ready on " in since_clock
    assert all(line[:8] >= clock for line in since_clock.splitlines())
    time.sleep(1.2)
    assert logged.run("logs", "--since", "1s", "--grep", "products", check=True).stdout == ""


def test_bad_input_is_one_line_and_exit_2(logged: Sandbox) -> None:
    regex = logged.run("logs", "--grep", "(unclosed")
    assert (regex.returncode, one_error_line(regex)) == (
        2, "--grep '(unclosed' is not a regular expression (missing ), unterminated "
           r"subpattern at position 0); escape what is meant literally, e.g. --grep 'cost "
           r"\(ms\)'")
    since = logged.run("logs", "--since", "5 minutes")
    assert (since.returncode, one_error_line(since)) == (
        2, "--since '5 minutes' is neither a duration (30s, 5m, 2h, 1h30m) nor a clock time "
           "today (HH:MM or HH:MM:SS); e.g. --since 5m")
    assert regex.stdout == since.stdout == ""


def test_follow_json_prints_each_new_line_as_it_is_written(logged: Sandbox) -> None:
    with logged.background("logs", "supervisor", "-f", "-n", "1", "--json") as follow:
        assert follow.stdout is not None
        reader = LineReader(follow.stdout)
        reader.wait_for('"service":"supervisor"', timeout=10)  # the last line so far
        logged.run("restart", "orders", check=True)
        seen = reader.wait_for("orders ready on", timeout=10)
        lines = json_lines(seen)
        assert [line["service"] for line in lines] == ["supervisor"] * len(lines)
        assert any(line["message"] == "orders stopped" for line in lines)
        follow.send_signal(signal.SIGINT)  # Ctrl-C: it stops quietly
        assert follow.wait(10) == 0
        assert follow.stderr is not None and follow.stderr.read() == ""


def ignoring_ctrl_c() -> None:
    """As a shell's background job starts a command: SIGINT ignored, inherited as such."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("follow", [["logs", "supervisor", "-f", "-n", "1"],
                                    ["events", "--follow"]], ids=["logs", "events"])
def test_a_follow_started_as_a_background_job_stops_quietly_on_a_signal(
        logged: Sandbox, follow: list[str], stop: signal.Signals) -> None:
    """Issue 23: started with SIGINT ignored (`msshop logs -f &`), the followers never
    stopped on Ctrl-C; now SIGINT, and SIGTERM too, end them quietly with exit code 0."""
    logged.run("signup", "--email", "follow@example.com", "--name", "F")  # an event to show
    process = subprocess.Popen([sys.executable, "-m", "msshop", *follow], env=logged.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=ignoring_ctrl_c)
    try:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline(), "it shows what there is, then follows"
        process.send_signal(stop)
        assert process.wait(10) == 0
        assert process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_nats_servers_lines_merge_in_time_order_with_msshops(tmp_path: Path) -> None:
    """nats-server stamps `[pid] 2026/11/24 17:14:14.394933 [INF]`; as text those sort
    after every `17:14:14.867 …` line of msshop's."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND="nats") as sandbox:
        printed = json_lines(sandbox.run("logs", "-n", "0", "--json", check=True).stdout)
        shown = sandbox.run("logs", "-n", "0", "--no-prefix", check=True).stdout.splitlines()
    times = [dt.datetime.fromisoformat(line["time"]) for line in printed]
    assert times == sorted(times)
    bus = [line for line in printed if line["service"] == "bus"]
    assert bus and all(line["line"].startswith("[") for line in bus), "nats-server's own"
    assert {line["level"] for line in bus} <= {"INFO", "WARNING", "ERROR", "DEBUG", "TRACE"}
    starting = next(i for i, line in enumerate(shown) if line.endswith("Starting nats-server"))
    ready = next(i for i, line in enumerate(shown) if " supervisor INFO bus ready on " in line)
    serving = next(i for i, line in enumerate(shown) if " users INFO users serving on " in line)
    assert starting < ready < serving, "the server started, then was ready, then users"
