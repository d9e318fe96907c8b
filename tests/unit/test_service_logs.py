"""`msshop logs`' parsing: --since (durations, clock times), both kinds of time stamp
(msshop's own, date-less; nats-server's, dated), dates across midnight, the merge order of
logs in both formats, and the text and JSON renderings."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from rich.console import Console

from msshop import render
from msshop.cli.app import as_flag
from msshop.contracts.config import load
from msshop.contracts.errors import InvalidArgument
from msshop.runtime.orchestrator import service_logs
from msshop.runtime.orchestrator.log_files import complete_lines
from msshop.runtime.orchestrator.service_logs import LogLine, Stamp, merged_by_time, stamp, timed

NOW = dt.datetime(2026, 11, 24, 17, 30, 0)
OWN = "17:14:14.867 users INFO users serving on 127.0.0.1:7101"
NATS = "[10127] 2026/11/24 17:14:14.394933 [INF] Starting nats-server"


def at(hour: int, minute: int, second: float = 0, day: int = 24) -> float:
    return (dt.datetime(2026, 11, day, hour, minute) + dt.timedelta(seconds=second)).timestamp()


@pytest.mark.parametrize(("text", "seconds_ago"), [
    ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("0.5s", 0.5),
    ("0s", 0),
])
def test_since_takes_a_duration_back_from_now(text: str, seconds_ago: float) -> None:
    assert service_logs.since_moment(text, NOW) == NOW.timestamp() - seconds_ago


@pytest.mark.parametrize(("text", "clock"), [
    ("17:05", (17, 5, 0)), ("9:05", (9, 5, 0)), ("08:00:30", (8, 0, 30)), ("00:00", (0, 0, 0)),
])
def test_since_takes_a_clock_time_today(text: str, clock: tuple[int, int, int]) -> None:
    assert service_logs.since_moment(text, NOW) == NOW.replace(
        hour=clock[0], minute=clock[1], second=clock[2]).timestamp()


@pytest.mark.parametrize("text", ["5x", "", "m", "5 m", "-5m", "25:00", "12:60", "12:00:60",
                                  "12", "yesterday", "1h30"])
def test_a_bad_since_is_one_line_naming_both_forms(text: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        service_logs.since_moment(text, NOW)
    message = refused.value.worded(as_flag)  # as the CLI says it
    assert message.startswith(f"--since {text!r} is neither a duration")
    assert "HH:MM" in message and "\n" not in message


def test_a_bad_grep_is_one_line_with_the_fix() -> None:
    assert service_logs.pattern(r"ERROR|WARN").search("x WARN y")
    with pytest.raises(InvalidArgument) as refused:
        service_logs.pattern("(")
    assert refused.value.exit_code == 2
    message = refused.value.worded(as_flag)  # as the CLI says it
    assert message.startswith("--grep '(' is not a regular expression (")
    assert "escape" in message and "\n" not in message


def test_msshops_own_stamp_is_a_time_of_day_with_no_date() -> None:
    assert stamp(OWN) == Stamp(17 * 3600 + 14 * 60 + 14.867, None, "INFO",
                               "users serving on 127.0.0.1:7101")
    assert stamp("17:14:14.803 supervisor WARNING products crashed") == Stamp(
        17 * 3600 + 14 * 60 + 14.803, None, "WARNING", "products crashed")


def test_a_nats_servers_stamp_has_its_date_and_microseconds() -> None:
    assert stamp(NATS) == Stamp(17 * 3600 + 14 * 60 + 14.394933, dt.date(2026, 11, 24),
                                "INFO", "Starting nats-server")
    found = stamp('[7] 2026/11/24 17:14:14.652352 [WRN] Healthcheck failed: "no leader"')
    assert found is not None and found.level == "WARNING"
    assert found.message == 'Healthcheck failed: "no leader"'
    assert stamp("[7] 2026/11/24 17:14:14.652352 [ERR] x") == Stamp(
        17 * 3600 + 14 * 60 + 14.652352, dt.date(2026, 11, 24), "ERROR", "x")


@pytest.mark.parametrize("line", [
    "Traceback (most recent call last):", '  File "x.py", line 1, in <module>', "",
    "17:14 users INFO short", "[1] 2026/13/40 17:14:14.1 [INF] no such day",
    "17:14:14.867users INFO glued",
])
def test_a_line_without_a_stamp_has_none(line: str) -> None:
    assert stamp(line) is None


def test_a_date_less_line_takes_the_files_date_and_the_day_before_past_midnight() -> None:
    lines = ["23:59:58.500 users INFO before midnight", "23:59:59.900 users INFO still",
             "00:00:00.100 users INFO after midnight", "00:00:01.000 users INFO later"]
    got = timed("users", lines, dt.datetime(2026, 11, 25, 0, 0, 2))
    assert [line.at for line in got] == [at(23, 59, 58.5), at(23, 59, 59.9),
                                         at(0, 0, 0.1, day=25), at(0, 0, 1, day=25)]
    assert got[0].level == "INFO" and got[0].message == "before midnight"


def test_lines_a_little_out_of_order_stay_on_the_same_day() -> None:
    got = timed("supervisor", ["10:00:00.200 supervisor INFO b",
                               "10:00:00.100 supervisor INFO a"], dt.datetime(2026, 11, 24, 11))
    assert [line.at for line in got] == [at(10, 0, 0.2), at(10, 0, 0.1)]


def test_a_line_without_a_stamp_goes_with_the_line_before_it() -> None:
    lines = ["12:00:00.000 query ERROR boom", "Traceback (most recent call last):",
             "ValueError: x", "12:00:01.000 query INFO fine"]
    got = timed("query", lines, NOW)
    assert [line.at for line in got[:3]] == [at(12, 0)] * 3
    assert [line.level for line in got] == ["ERROR", "ERROR", "ERROR", "INFO"]
    assert got[1].message == "Traceback (most recent call last):"
    before = got[-1]
    following = timed("query", ["  more of it"], NOW, before=before)  # --follow's next read
    assert following[0].at == before.at and following[0].level == "INFO"


def test_nats_and_msshop_lines_merge_by_their_moments() -> None:
    """Compared as text, "[10127] 2026/…" sorts after every "17:14:…" line."""
    bus = timed("bus", ["[1] 2026/11/24 17:14:14.100000 [INF] first",
                        "[1] 2026/11/24 17:14:14.900000 [INF] fourth"], NOW)
    users = timed("users", ["17:14:14.300 users INFO second",
                            "17:14:14.500 users INFO third"], NOW)
    merged = [line.message for line in merged_by_time([users, bus])]
    assert merged == ["first", "second", "third", "fourth"]


def test_the_log_view_checks_its_arguments_before_a_line_is_read(tmp_path: Path) -> None:
    settings = load(env={}, overrides={"sandbox.dir": tmp_path})
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "users.log").write_text(
        "17:00:00.000 users INFO a\n17:00:01.000 users WARNING b\n17:00:02.000 users INFO c\n"
        "17:00:03.000 users INFO partly writ")
    with pytest.raises(InvalidArgument):
        service_logs.view(settings, None, since="soon")
    with pytest.raises(InvalidArgument):
        service_logs.view(settings, None, grep="[")
    shown = service_logs.view(settings, None, 2)
    assert shown.names == ["users"]
    assert [line.message for line in shown.lines] == ["b", "c"]  # the last line is unfinished
    assert [line.message for line in service_logs.view(settings, "users", grep="WARN|a$").lines] \
        == ["a", "b"]


def entry() -> LogLine:
    return LogLine("bus-2", "[1] 2026/11/24 17:14:14.100000 [WRN] \x1b[2Jslow", at(17, 14, 14.1),
                   "WARNING", "\x1b[2Jslow")


def test_a_log_line_after_its_service_column_or_alone_escaped() -> None:
    out = Console(width=40, record=True, color_system=None, force_terminal=False)
    render.log_entry(out, entry(), 10)
    render.log_entry(out, entry(), None)
    assert out.export_text() == (
        "bus-2      | [1] 2026/11/24 17:14:14.100000 [WRN] \\x1b[2Jslow\n"
        "[1] 2026/11/24 17:14:14.100000 [WRN] \\x1b[2Jslow\n")


def test_a_log_line_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    render.json_line(render.log_record(entry()))
    printed = json.loads(capsys.readouterr().out)
    assert printed["service"] == "bus-2" and printed["level"] == "WARNING"
    assert printed["message"] == "\x1b[2Jslow" and printed["line"].startswith("[1] 2026")
    assert dt.datetime.fromisoformat(printed["time"]).timestamp() == at(17, 14, 14.1)


@pytest.mark.parametrize("last", [1, 40, 1_000, 5_000, 100_000])
def test_the_last_lines_read_from_the_end_are_the_whole_files_last_lines(
        tmp_path: Path, last: int) -> None:
    """Read from the end in growing chunks: the same lines (none cut in two where a chunk
    began, the line still being written left out) and the same offset as a whole read."""
    log = tmp_path / "users.log"
    with log.open("w") as f:
        for n in range(20_000):  # lines of every length, some longer than a chunk
            f.write(f"10:00:00.{n % 1000:03d} users INFO line {n} " + "x" * (n % 97) + "\n")
            if n % 5_000 == 0:
                f.write("y" * 100_000 + "\n")
        f.write("10:00:01.000 users INFO still being writ")
    whole, end = complete_lines(log)
    assert complete_lines(log, last) == (whole[-last:], end)
    assert end == log.stat().st_size - len("10:00:01.000 users INFO still being writ")
