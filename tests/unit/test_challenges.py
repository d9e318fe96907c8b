"""The challenge ladder, its CLI without a sandbox (list, show, bad input) and the
progress file: read back, written whole, a damaged one said in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

from msshop.contracts.answers import UserOrders, order_line
from msshop.contracts.errors import UsageError
from msshop.instruments.challenges import ladder, progress
from msshop.instruments.challenges.composition import compared
from msshop.instruments.challenges.findings import Finding, refusal
from tests.cli_in_process import msshop_in_process
from tests.conftest import sandbox_env


def run(tmp_path: Path, *args: str, columns: int = 80) -> tuple[int, str, str]:
    result = msshop_in_process("challenge", *args, cwd=tmp_path, env=sandbox_env(
        tmp_path / "unused", COLUMNS=str(columns)))
    return result.returncode, result.stdout, result.stderr


def test_the_ladder_has_ten_rungs_in_order_each_declared_whole() -> None:
    assert [c.rung for c in ladder.LADDER] == list(range(1, 11))
    assert [c.name for c in ladder.LADDER if c.trial is not None] == [
        c.name for c in ladder.LADDER]  # every rung gradeable
    for found in ladder.LADDER:
        assert len(found.asks) <= ladder.ASKS_WIDTH, found.name
        assert all((found.task, found.checks, found.faults, found.limits, found.hint,
                    found.lesson)), found.name


def test_list_is_one_line_a_rung_within_80_columns_with_the_status_here(tmp_path: Path
                                                                         ) -> None:
    code, out, _ = run(tmp_path, "list")
    lines = out.splitlines()
    assert code == 0 and len(lines) >= 10
    assert all(len(line) <= 80 for line in lines)
    assert lines[0] == " 1. direct-call      not tried answer by calling the owners; " \
                       "equal the monolith"
    progress.record("direct-call", "passed", tmp_path)
    progress.record("batched", "failed", tmp_path)
    listed = json.loads(run(tmp_path, "list", "--json")[1])
    statuses = {c["name"]: c["status"] for c in listed["challenges"]}
    assert statuses["direct-call"] == "passed" and statuses["batched"] == "failed"
    assert statuses["fast"] == "not tried" and listed["problem"] is None


def test_show_prints_task_checks_faults_limits_hint_and_lesson(tmp_path: Path) -> None:
    code, out, _ = run(tmp_path, "show", "batched")
    assert code == 0 and out.startswith("2. batched (not tried): ")
    for label in ("task:", "checks:", "faults:", "limits:", "hint:", "lesson:"):
        assert f"\n{label} " in out, label
    assert all(len(line) <= 80 for line in out.splitlines())
    shown = json.loads(run(tmp_path, "show", "crash", "--json")[1])
    assert shown["gradeable"] is True and shown["rung"] == 6


def test_bad_input_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    names = ", ".join(ladder.BY_NAME)
    for args, said in [
        (("show", "nope"), f"error: no challenge named 'nope'; choose one of: {names}"),
        (("run", "nope"), f"error: no challenge named 'nope'; choose one of: {names}"),
        (("jump",), "error: msshop challenge 'jump': choose one of: list, show, run"),
        (("show",), f"error: msshop challenge show needs a NAME; choose one of: {names}"),
        (("list", "--service", "x"), "error: --service: only msshop challenge run takes it"),
        (("run", "fast", "--service", ""), "error: --service names no command; e.g. "
                                           "--service 'python3 d/service.py'"),
        (("run", "fast", "--seconds", "0"),
         "error: --seconds 0: give a length from 0 to 600 seconds"),
    ]:
        code, _, err = run(tmp_path, *args, columns=400)
        assert code == 2 and err.strip() == said, (args, err)


def test_progress_is_written_whole_and_a_damaged_file_is_one_line(tmp_path: Path) -> None:
    assert progress.read(tmp_path).statuses == {}
    progress.record("direct-call", "failed", tmp_path)
    progress.record("direct-call", "passed", tmp_path)
    progress.record("batched", "unknown", tmp_path)  # changes nothing
    assert progress.read(tmp_path).statuses == {"direct-call": "passed"}
    assert [p.name for p in tmp_path.iterdir()] == [progress.PROGRESS_FILE]  # no leftovers
    (tmp_path / progress.PROGRESS_FILE).write_text('{"challenges": ')  # cut short
    damaged = progress.read(tmp_path)
    assert damaged.statuses == {} and damaged.problem == (
        ".msshop-challenges.json is damaged (not the JSON msshop writes); delete it to "
        "start the ladder afresh")
    code, out, _ = run(tmp_path, "list", columns=200)
    assert code == 0 and damaged.problem in out
    progress.record("batched", "passed", tmp_path)  # a damaged file is replaced
    assert progress.read(tmp_path).statuses == {"batched": "passed"}


def test_progress_in_a_directory_that_cannot_be_written_is_one_line(tmp_path: Path
                                                                     ) -> None:
    if os.geteuid() == 0:
        (tmp_path / progress.PROGRESS_FILE).mkdir()  # root writes anywhere: a folder instead
    else:
        tmp_path.chmod(0o500)
    try:
        progress.record("fast", "passed", tmp_path)
    except UsageError as exc:
        assert "cannot keep your progress in" in str(exc)
    else:
        raise AssertionError("no error")
    finally:
        tmp_path.chmod(0o700)


def test_a_finding_is_one_line_subject_actual_expected_cause() -> None:
    finding = Finding("bounded calls", "user 12", "at most 2", "products got 9 requests",
                      "one call per product (N+1)?", "users 1, orders 1, products 9")
    assert finding.line() == "user 12: products got 9 requests, expected at most 2 — " \
                             "one call per product (N+1)?"
    assert finding.record()["evidence"] == "users 1, orders 1, products 9"


def test_an_error_answer_is_said_short_with_its_trace_id_kept() -> None:
    trace = "9d23d1edfd3d09a60946be755997d882"
    said, trace_id = refusal("users failed with HTTP 503: a partition on purpose; clear "
                             f"it with: msshop chaos query --to users --clear (trace {trace})")
    assert (said, trace_id) == ("users failed with HTTP 503: a partition on purpose", trace)
    assert refusal("query is not running") == ("query is not running", None)


def test_an_answer_of_the_wrong_shape_is_a_finding_not_a_crash() -> None:
    truth: UserOrders = {
        "question": "user-orders", "strategy": "monolith", "label": "",
        "user": {"id": 1, "name": "Ann", "email": "ann@example.com"},
        "orders": [order_line(5, 2, "Hat", 1, 1000)], "freshness": {"live": True}}
    assert compared(truth, truth) == []
    for answer, said in [
        ("not even an object", 'no "user" in the answer'),
        ({"user": truth["user"], "orders": "none"}, 'no "orders" list in the answer'),
        ({"user": truth["user"], "orders": [{"title": "Hat"}]}, "an order without one"),
        ({"user": truth["user"], "orders": [42]}, "an order without one"),
    ]:
        assert said in [actual for _, actual, _ in compared(truth, answer)], answer
    wrong = {**truth, "orders": [{**truth["orders"][0], "title": "Cap"}]}
    assert compared(truth, wrong) == [(
        "'Hat'", "order 5 title is 'Cap'",
        "is each title the product's own, looked up by product_id?")]
