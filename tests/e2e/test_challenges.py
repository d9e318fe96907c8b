"""`msshop challenge`: each gradeable rung run for real (a sandbox of its own, real
processes, the learner's program as the query service), its verdict and what a learner is
told; the ladder, the progress file, the report and the exit codes."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli_in_process import msshop_in_process
from tests.conftest import msshop, sandbox_env

ROOT = Path(__file__).resolve().parents[2]
SQUEEZED = ("--seconds", "1")  # the timed parts of a run (fast), a few seconds in all
PYTHON_REFERENCE = ROOT / "examples" / "service-d-python" / "service.py"
NODE_REFERENCE = ROOT / "examples" / "service-d-node" / "service.js"
NAIVE = ROOT / "tests" / "programs" / "naive_direct_call.py"
STAND_IN = ROOT / "tests" / "programs" / "stand_in_query.py"


def challenge(tmp_path: Path, *args: str, timeout: float = 120
              ) -> tuple[int, dict[str, object], str]:
    """`msshop challenge run ARGS --json` in tmp_path: (exit code, the report, stderr)."""
    result = msshop("challenge", "run", *args, *SQUEEZED, "--json",
                    env=sandbox_env(tmp_path / "unused"), cwd=tmp_path, timeout=timeout)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def climbs(tmp_path: Path, *service: str, **env: str) -> dict[str, Any]:
    """`msshop challenge run all ARGS --json`: the whole ladder; its report."""
    result = msshop("challenge", "run", "all", *service, *SQUEEZED, "--json",
                    env=sandbox_env(tmp_path / "unused", **env), cwd=tmp_path, timeout=600)
    assert result.stdout, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert result.returncode == {"passed": 0, "failed": 1, "unknown": 2}[
        str(report["verdict"])], (report["verdict"], result.stderr)
    assert "Traceback" not in result.stderr
    return report


def passes_every_rung(tmp_path: Path, *service: str, **env: str) -> None:
    report = climbs(tmp_path, *service, **env)
    assert report["verdict"] == "passed", [
        (r["challenge"], r["findings"][:1], r["unknown"]) for r in report["challenges"]
        if r["verdict"] != "passed"]
    for rung in report["challenges"]:
        assert rung["findings"] == [] and rung["unknown"] == [], rung
    assert [r["challenge"] for r in report["challenges"]] == [
        "direct-call", "batched", "read-model", "at-least-once", "order", "crash",
        "read-your-writes", "outage", "rebuild", "fast"]


@pytest.mark.parametrize("bus", ["log", "nats"])
def test_msshops_own_query_service_passes_every_gradeable_rung(tmp_path: Path, bus: str
                                                              ) -> None:
    passes_every_rung(tmp_path, "--bus", bus)


@pytest.mark.parametrize("bus", ["log", "nats"])
def test_the_python_starting_point_passes_every_gradeable_rung(tmp_path: Path, bus: str
                                                               ) -> None:
    # the learner's first two commands: a starting point, then the first rung against it
    msshop_in_process("new", "service", "query", "--lang", "python", "d/",
                      env=sandbox_env(tmp_path / "unused"), cwd=tmp_path, check=True)
    assert (tmp_path / "d" / "service.py").is_file()
    # as the learner types it, in the environment msshop is installed in (its bin first on
    # PATH, as an activated venv has it: not another venv that happens to be first on the
    # shell's PATH, which the kernel's rule rightly keeps it from reading): `python` where
    # there is one (a pyenv shim: the rule lets it read its manager's root), `python3`
    # where only that is installed
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    python = "python" if shutil.which("python", path=path) else "python3"
    passes_every_rung(tmp_path, "--bus", bus, "--service", f"{python} d/service.py",
                      PATH=path)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("bus", ["log", "nats"])
def test_the_node_reference_passes_every_gradeable_rung(tmp_path: Path, bus: str) -> None:
    passes_every_rung(tmp_path, "--bus", bus, "--service", f"node {NODE_REFERENCE}")


def test_a_naive_n_plus_1_caller_fails_batched_naming_the_user_and_the_bound(
        tmp_path: Path) -> None:
    naive = f"{sys.executable} {NAIVE} {PYTHON_REFERENCE}"
    code, report, _ = challenge(tmp_path, "direct-call", "--service", naive)
    assert (code, report["verdict"]) == (0, "passed")  # its answers are right
    code, report, _ = challenge(tmp_path, "batched", "--service", naive)
    assert (code, report["verdict"]) == (1, "failed")
    findings = report["findings"]
    assert isinstance(findings, list)
    first = findings[0]  # the user with the most orders (40) is named first
    assert first["line"].startswith("user 8: products got 40 requests for 40 orders, "
                                    "expected at most 2 at any number of orders — "
                                    "one call per product (N+1)?"), first
    assert first["evidence"] == "requests under the trace: users 1, orders 1, products 40"
    traces = report["traces"]
    assert isinstance(traces, dict)
    served = [s for s in traces[first["trace_id"]] if s["kind"] == "server"]
    assert sum(s["service"] == "products" for s in served) == 40
    progress = json.loads((tmp_path / ".msshop-challenges.json").read_text())
    assert progress["challenges"] == {"direct-call": {"status": "passed"},
                                      "batched": {"status": "failed"}}


def test_a_wrong_answer_fails_with_one_line_a_user_each_and_a_readable_page(
        tmp_path: Path) -> None:
    result = msshop("challenge", "run", "direct-call", "--service",
                    f"{sys.executable} {STAND_IN}", "--report", "page",
                    env=sandbox_env(tmp_path / "unused"), cwd=tmp_path, timeout=120)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    verdict = next(n for n, line in enumerate(lines) if not line.startswith(("challenge: ",
                                                                           "  ", "wrote ")))
    assert lines[verdict].startswith("direct-call: failed (rung 1, log bus, ")
    assert lines[verdict + 2] == "  user 1: no \"user\" in the answer, expected the user's id, " \
                       "name and email — is the user's own record asked for (GET /users/ID)?"
    assert "Traceback" not in result.stdout + result.stderr
    assert "{" not in result.stdout  # no JSON thrown at the learner
    page = (tmp_path / "page" / "index.html").read_text()
    assert "failed" in page and "user 1: no &quot;user&quot; in the answer" in page
    written = json.loads((tmp_path / "page" / "report.json").read_text())
    assert written["verdict"] == "failed" and written["more_findings"] == 5
    for trace_id in written["traces"]:  # each shown finding's answer, drawn
        assert f'href="trace-{trace_id}.html"' in page
        assert (tmp_path / "page" / f"trace-{trace_id}.html").is_file()
    assert len(written["traces"]) == 3


def test_a_program_that_does_not_exist_or_dies_at_start_is_one_line(tmp_path: Path
                                                                    ) -> None:
    env = sandbox_env(tmp_path / "unused")
    missing = msshop("challenge", "run", "direct-call", "--service", "no-such-program-xyz",
                     env=env, cwd=tmp_path)
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines() == [
        "error: query's command `no-such-program-xyz` cannot run: no-such-program-xyz is "
        "not a program on PATH; install it or fix the command (--service query=..., "
        "MSSHOP_QUERY_COMMAND or [services.query] command)"]
    dying = msshop("challenge", "run", "direct-call", "--service",
                   shlex.join([sys.executable, str(STAND_IN), "exit"]), env=env, cwd=tmp_path)
    assert dying.returncode != 0
    [line] = dying.stderr.strip().splitlines()
    assert line.startswith("error: query failed to start (exited with code 3)"), line
    assert "msshop logs" not in line  # its sandbox, and its log, are gone
    assert not (tmp_path / ".msshop-challenges.json").exists()


def test_a_run_that_cannot_tell_says_why_in_one_line_and_exits_2(tmp_path: Path) -> None:
    # every rung is gradeable on either bus now: what cannot be told is a program that
    # never says it is cut off from the bus (here on NATS, cut off at the bus's door)
    hiding = f"{sys.executable} {NAIVE} {PYTHON_REFERENCE} hides-bus-errors"
    result = msshop("challenge", "run", "read-your-writes", "--bus", "nats", "--service",
                    hiding, *SQUEEZED, env=sandbox_env(tmp_path / "unused"),
                    cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "could not hold your consumer off the bus within 10 s (its /health " \
        "consumer.bus_error stayed empty)" in " ".join(result.stdout.split())
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / ".msshop-challenges.json").exists()  # unknown changes nothing


def test_a_slow_service_fails_fast_beside_msshops_own_figures(tmp_path: Path) -> None:
    slow = f"{sys.executable} {NAIVE} {PYTHON_REFERENCE} slow"
    code, report, _ = challenge(tmp_path, "fast", "--service", slow)
    assert (code, report["verdict"]) == (1, "failed")
    figures = report["figures"]
    assert isinstance(figures, dict)
    assert figures["yours"]["p50_ms"] > 250 > figures["msshop"]["p50_ms"]
    findings = report["findings"]
    assert isinstance(findings, list)
    assert findings[0]["line"].startswith("500 reads at 500/s: p50 ")
    assert ", expected p50 ≤ 5 ms — " in findings[0]["line"]
    assert findings[0]["evidence"].startswith("msshop's own query service: p50 ")


def test_a_service_that_never_answers_fails_in_bounded_time(tmp_path: Path) -> None:
    hanging = f"{sys.executable} {NAIVE} {PYTHON_REFERENCE} hang"
    code, report, _ = challenge(tmp_path, "batched", "--service", hanging, timeout=60)
    assert (code, report["verdict"]) == (1, "failed")
    checked = report["checked"]
    assert isinstance(checked, list)
    assert checked[-1] == "stopped asking after 2 questions went unanswered"
    findings = report["findings"]
    assert isinstance(findings, list) and len(findings) == 2
    assert findings[0]["line"].startswith("user 8: no answer (query did not answer within "
                                          "5 s at http://127.0.0.1:")


BROKEN = ROOT / "tests" / "programs" / "broken_service_d.py"


def broken(defect: str | None = None) -> str:
    return f"{sys.executable} {BROKEN}" + (f" --break {defect}" if defect else "")


AGAIN = (r"user \d+: order \d+ appears (twice|\d+ times), expected once — the bus delivered "
         r"OrderPlaced @[\d,]+ again at \d+\.\d s \((duplicates fault|late redelivery)\); "
         r"was it applied twice\?")
STALE = (r"product 1: title '#1 v[23] [0-9:]+' shown \(user 8's answer\), expected the "
         r"newest, '#1 v4 [0-9:]+' — the bus handed its updates v4 @[\d,]+, v3 @[\d,]+, "
         r"v2 @[\d,]+ \(reorder fault\): is ProductUpdated applied by its version\?")
TWICE = (r"user \d+: order \d+ appears twice, expected once — killed at position [\d,]+ "
         r"while applying [\d,]+ to [\d,]+ \(crash [123]\): is your position stored in "
         r"the same transaction as the rows it produced\?")
UNWAITED = (r"user \d+ \(after=\d+&wait_ms=(2000|300)\): an answer without it after \d+ "
            r"ms, its freshness at position [\d,]+, expected order \d+ in it( within 2000 "
            r"ms|, or a 503 after 300 ms) — does it wait until it has applied POSITION, and "
            r"answer 503 if it cannot\?")
#: each deliberately broken Service D: the rungs it must fail, each with a line its
#: findings must hold (and no other rung failed)
BROKEN_RUNGS: dict[str, dict[str, str]] = {
    "correct": {},
    "n-plus-one": {"batched": r"user \d+: products got \d+ requests for \d+ orders, "
                              r"expected at most 2 at any number of orders — one call per "
                              r"product \(N\+1\)\? .*"},
    "not-idempotent": {"at-least-once": AGAIN},
    "position-outside": {"crash": TWICE},
    "ignores-versions": {"order": STALE},
    "ignores-after": {"read-your-writes": UNWAITED},
    "slow": {"fast": r"500 reads at 500/s: p50 [\d.]+ ms, expected p50 ≤ 5 ms — .*"},
    "starts-at-head": {"rebuild": r"user \d+: no answer \(HTTP 404: no user with id \d+\), "
                                  r"expected an answer from your read model — does it start "
                                  r"from position 0 when its read model is empty, not at the "
                                  r"head\?"},
    "one-at-a-time": {"rebuild": r"the rebuild: took [\d.]+ s \([\d,]+ events/s\), expected "
                                 r"[\d,]+ events applied within 3 s — ask the bus for a page "
                                 r"of events and apply each page in one transaction, not one "
                                 r"event per request and a commit per event"},
    # its answers are made by calling: wrong when the calls are cut (read-model) or
    # products is down (outage), and cut at orders' page for the rebuild's buyer, who has
    # 20,000 orders (rebuild)
    "calls-at-query-time": {
        "read-model": r"user \d+: .*, expected an answer from your read model — your calls "
                      r"to the other services were cut: does it call them at query time\?",
        "outage": r"user \d+ \(products down\): HTTP 503: products is down: .*, expected an "
                  r"answer from your read model — a replicated answer needs nothing of "
                  r"products: does it call it, or wait for it\?",
        "rebuild": r"user \d+: order \d+ is missing, expected it in the answer.*"},
}


def program_of(variant: str) -> str:
    if variant == "calls-at-query-time":
        return f"{sys.executable} {NAIVE} {PYTHON_REFERENCE} calls-at-query-time"
    return broken(None if variant == "correct" else variant)


@pytest.mark.parametrize("variant", list(BROKEN_RUNGS))
def test_the_whole_ladder_fails_a_broken_service_d_exactly_where_it_is_broken(
        tmp_path: Path, variant: str) -> None:
    """Each deliberately broken Service D climbs the whole ladder: it fails the rungs its
    defect is about, each with the line a learner is to read, and passes every other;
    nothing is unknown."""
    fails_exactly(tmp_path, climbs(tmp_path, "--service", program_of(variant)),
                  BROKEN_RUNGS[variant])


@pytest.mark.parametrize("variant", ["not-idempotent", "position-outside",
                                     "ignores-versions", "ignores-after"])
def test_on_nats_the_whole_ladder_fails_the_broken_service_d_where_it_is_broken(
        tmp_path: Path, variant: str) -> None:
    """The same on NATS, where the program reads JetStream through the Python reference's
    reader (which it may read: MSSHOP_ISOLATION_READ) and meets the faults at the bus's
    door (whose journal is the evidence, as the log bus's is): the defects the bus's
    faults show. (That it passes the rest there is the references' whole ladder on
    NATS: it reads through the Python reference's reader.)"""
    report = climbs(tmp_path, "--bus", "nats", "--service", program_of(variant),
                    MSSHOP_ISOLATION_READ=str(PYTHON_REFERENCE.parent))
    fails_exactly(tmp_path, report, BROKEN_RUNGS[variant])


def fails_exactly(tmp_path: Path, report: dict[str, Any], fails: dict[str, str]) -> None:
    assert report["unknown"] == [], report["unknown"]
    assert set(report["failed"]) == set(fails), [
        (r["challenge"], r["findings"][:1]) for r in report["challenges"]
        if r["verdict"] != "passed"]
    for rung in report["challenges"]:
        lines = [f["line"] for f in rung["findings"]]
        assert bool(lines) == (rung["challenge"] in fails), rung
        if lines:
            assert any(re.fullmatch(fails[rung["challenge"]], line) for line in lines), lines
        assert not any("msshop chaos" in line for line in lines), lines  # not the learner's
    assert report["verdict"] == ("failed" if fails else "passed")
    statuses = json.loads((tmp_path / ".msshop-challenges.json").read_text())["challenges"]
    assert {name for name, s in statuses.items() if s["status"] == "failed"} == set(fails)


def test_run_all_draws_a_line_a_rung_the_ladders_verdict_and_a_page(tmp_path: Path) -> None:
    result = msshop("challenge", "run", "all", *SQUEEZED, "--report", "ladder",
                    env=sandbox_env(tmp_path / "unused", COLUMNS="80"), cwd=tmp_path,
                    timeout=300)
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    assert all(len(line) <= 80 for line in said.splitlines()), said
    assert re.search(r"^ 1\. direct-call +passed +[\d.]+ s$", said, re.M), said
    assert re.search(r"^10\. fast +passed +[\d.]+ s$", said, re.M), said
    assert re.search(r"^ladder: passed \(10 of 10 passed; log bus, [\d.]+ s\)$",
                     result.stdout, re.M), result.stdout
    page = (tmp_path / "ladder" / "index.html").read_text()
    written = json.loads((tmp_path / "ladder" / "report.json").read_text())
    assert [r["challenge"] for r in written["challenges"]] == [
        "direct-call", "batched", "read-model", "at-least-once", "order", "crash",
        "read-your-writes", "outage", "rebuild", "fast"]
    for rung in written["challenges"]:
        assert f'href="{rung["challenge"]}/index.html"' in page
        assert (tmp_path / "ladder" / rung["challenge"] / "report.json").is_file()
    shown = msshop("challenge", "show", "all", env=sandbox_env(tmp_path / "unused"),
                   cwd=tmp_path)
    assert shown.returncode == 2 and "no challenge named 'all'" in shown.stderr
    unnamed = msshop("challenge", "run", env=sandbox_env(tmp_path / "unused"), cwd=tmp_path)
    assert unnamed.returncode == 2 and "(or all: the whole ladder)" in unnamed.stderr
