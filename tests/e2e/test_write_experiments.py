"""`msshop experiment` of a purchases scenario (issue 27): every write strategy buys side by
side under the same faults, in a throw-away sandbox of its own, on both buses; each is
checked on its own cast, and ends with the verdict the scenario is there to show
(direct-call's `invalid` under crashes is expected, and asserted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import msshop, sandbox_env

SECONDS = "5"
STRATEGIES = ["monolith", "direct-call", "saga", "saga-orchestrated"]
BUSES = pytest.mark.parametrize("backend", ["log", "nats"])


def experiment(tmp_path: Path, name: str, backend: str, *args: str
               ) -> tuple[int, dict[str, Any], str]:
    environment = sandbox_env(tmp_path / "unused", TMPDIR=str(tmp_path),
                              MSSHOP_BUS_BACKEND=backend)
    result = msshop("experiment", name, "--seconds", SECONDS, "--json", *args,
                    env=environment, timeout=180)
    assert result.stdout, result.stderr
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith("msshop-experiment-")]
    assert not leftovers, "the throw-away sandbox is removed"
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["workload"] == "purchases" and report["strategies"] == STRATEGIES
    assert report["bus"] == backend
    return result.returncode, report, result.stderr


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {name: outcome["verdict"] for name, outcome in report["outcomes"].items()}


def valid_everywhere(code: int, report: dict[str, Any]) -> None:
    assert code == 0 and report["verdict"] == "valid", report["outcomes"]
    assert set(verdicts(report).values()) == {"valid"}
    for name, outcome in report["outcomes"].items():
        checked = outcome["checked"]
        assert checked["confirmed"] == checked["stored_once"] > 0, (name, checked)


@BUSES
def test_products_down_direct_call_fails_the_sagas_finish_after_the_heal(
        tmp_path: Path, backend: str) -> None:
    code, report, progress = experiment(tmp_path, "writes-products-outage", backend)
    valid_everywhere(code, report)
    assert "products stopped" in progress
    figures = report["figures"]
    assert figures["direct-call"]["failed"] > 0, "direct-call needs products now"
    assert figures["monolith"]["failed"] == 0 and figures["monolith"]["confirmed"] == \
        figures["monolith"]["sent"]
    for saga in ("saga", "saga-orchestrated"):
        assert figures[saga]["failed"] == 0 and figures[saga]["pending"] == 0, saga
        assert figures[saga]["answered_pending"] == figures[saga]["sent"]
        # those placed during the outage waited for it: pending for a good part of it
        assert figures[saga]["pending_for_ms"]["max"] >= 1000, figures[saga]
    held = [s["strategies"]["saga"]["pending_orders"] or 0 for s in report["timeline"]]
    assert max(held) > 0, "the saga's pending orders are charted while products is down"


@BUSES
def test_crashes_leave_direct_call_invalid_and_the_sagas_valid(tmp_path: Path,
                                                               backend: str) -> None:
    code, report, progress = experiment(tmp_path, "writes-crashes", backend)
    assert code == 1 and report["verdict"] == "invalid"
    assert verdicts(report) == {"monolith": "valid", "direct-call": "invalid",
                                "saga": "valid", "saga-orchestrated": "valid"}, \
        report["outcomes"]
    problems = report["outcomes"]["direct-call"]["problems"]
    assert any("with no order" in p for p in problems), problems
    for killed in ("orders killed", "products killed", "users killed"):
        assert killed in progress


@BUSES
def test_the_last_items_are_never_oversold(tmp_path: Path, backend: str) -> None:
    code, report, _ = experiment(tmp_path, "writes-last-items", backend)
    valid_everywhere(code, report)
    for name, figures in report["figures"].items():
        # four products of ten each: exactly 40 confirmed, the rest out of stock
        assert (figures["confirmed"], figures["failed"], figures["pending"]) == (40, 0, 0), \
            (name, figures)
        assert figures["rejected"] == figures["sent"] - 40
        assert list(figures["reasons"]) == ["out of stock"], figures["reasons"]


@BUSES
def test_duplicated_and_redelivered_steps_apply_once(tmp_path: Path, backend: str) -> None:
    code, report, _ = experiment(tmp_path, "writes-duplicates", backend)
    valid_everywhere(code, report)
    for name, figures in report["figures"].items():
        assert figures["confirmed"] == figures["sent"], (name, figures)


@BUSES
def test_credit_running_out_gives_the_stock_back(tmp_path: Path, backend: str) -> None:
    code, report, _ = experiment(tmp_path, "writes-credit-runs-out", backend)
    valid_everywhere(code, report)
    for name, figures in report["figures"].items():
        assert figures["reasons"].get("not enough credit", 0) > 0, (name, figures)
        assert figures["failed"] == 0 and figures["pending"] == 0


@BUSES
def test_slow_users_slows_direct_calls_answer_and_the_sagas_outcome(
        tmp_path: Path, backend: str) -> None:
    code, report, _ = experiment(tmp_path, "writes-slow-users", backend)
    valid_everywhere(code, report)
    figures = report["figures"]
    assert figures["direct-call"]["outcome_ms"]["max"] >= 300
    for saga in ("saga", "saga-orchestrated"):
        assert figures[saga]["pending_for_ms"]["max"] >= 300, figures[saga]
    assert figures["monolith"]["outcome_ms"]["max"] < 300


def test_the_report_page_and_the_terminal_fit(tmp_path: Path) -> None:
    """--report DIR: an offline page of the write strategies' charts and verdicts, and the
    JSON; the terminal's report within 80 columns."""
    environment = sandbox_env(tmp_path / "unused", TMPDIR=str(tmp_path), COLUMNS="80")
    result = msshop("experiment", "writes-credit-runs-out", "--seconds", "3", "--report",
                    str(tmp_path / "report"), env=environment, timeout=180)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in STRATEGIES:
        assert f"{name}: valid" in result.stdout
    page = (tmp_path / "report" / "index.html").read_text()
    assert "saga-orchestrated" in page and "chart-pending" in page
    assert "<script src=" not in page  # plotly.js inside: nothing fetched
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written["workload"] == "purchases" and written["verdict"] == "valid"
