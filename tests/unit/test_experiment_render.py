"""`msshop experiment`'s report drawn: in the terminal (plotext charts, the figures, the
verdict) within 80 columns and plain when piped, and as one offline HTML page (plotly) with
everything from the scenario's file escaped."""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from msshop.contracts.errors import InvalidArgument
from msshop.instruments.experiments.page import page, write_report
from msshop.instruments.experiments.report import (
    ExperimentReport,
    Outcome,
    Reads,
    Second,
    StrategyFigures,
    Verdict,
)
from msshop.render.experiments import experiment, report_files

ANSI = re.compile(r"\x1b\[")


def reads(answered: int, refused: int, p50: float | None, p99: float | None) -> Reads:
    return {"answered": answered, "refused": refused, "p50_ms": p50, "p99_ms": p99}


def second(t: int, outage: bool, chance: random.Random) -> Second:
    """One second of a products outage: direct-call answers nothing (each read waits for
    its timeout or is refused at once), replicated answers all; no purchase is confirmed."""
    jitter = chance.uniform(0.9, 1.3)
    return {
        "t": t,
        "reads": {
            "direct-call": reads(0, 20, None, None) if outage else
            reads(20, 0, 3.1 * jitter, 9.5 * jitter),
            "replicated": reads(20, 0, 0.9 * jitter, 2.4 * jitter),
        },
        "purchases_confirmed": 0 if outage else 10,
        "purchases_refused": 10 if outage else 0,
        "outbox_backlog": 0,
        "consumer_behind": chance.randint(0, 3),
        "staleness_p50_ms": None if outage else 14.0 * jitter,
        "staleness_max_ms": None if outage else 38.0 * jitter,
    }


def figures(reads: int, availability: float | None, p50: float | None,
            p99: float | None) -> StrategyFigures:
    return {"reads": reads, "availability": availability, "p50_ms": p50, "p99_ms": p99}


def fake_report(title: str = "Products is down for ten seconds",
                outcome: Outcome | None = None) -> ExperimentReport:
    chance = random.Random(7)
    staleness = sorted(chance.uniform(6, 60) for _ in range(100))
    return {
        "workload": "reads",
        "scenario": "products-outage",
        "title": title,
        "shows": "direct-call needs products for every answer: while it is down, no answer.\n"
                 "replicated answers from its own copy and stays fresh.",
        "bus": "log",
        "started_at": "2025-11-24T16:05:00Z",
        "machine": "Linux x86_64, 2 cores",
        "seconds": 20,
        "read_rate": 20,
        "purchase_rate": 10,
        "faults": [{"kind": "kill", "target": "products", "label": "products killed",
                    "start": 5.0, "end": 15.2}],
        "timeline": [second(t, 5 <= t < 15, chance) for t in range(20)],
        "during_faults": {"direct-call": figures(200, 0.0, None, None),
                          "replicated": figures(200, 1.0, 1.0, 2.9)},
        "outside_faults": {"direct-call": figures(200, 1.0, 3.4, 11.8),
                           "replicated": figures(200, 1.0, 1.0, 2.7)},
        "staleness_ms": staleness,
        "staleness": {"count": 100, "p50": staleness[49], "p99": staleness[98],
                      "max": staleness[99]},
        "outcome": outcome or {
            "verdict": "valid", "problems": [], "recovered_in_s": 0.4,
            "checked": {"confirmed": 100, "stored": 100, "replicated": 100,
                        "verified_users": 20}},
    }


def rendered(report: ExperimentReport, terminal: bool = False) -> str:
    """What `experiment` writes: to a pipe, or to a 256-colour terminal."""
    written = io.StringIO()
    out = Console(file=written, width=80, force_terminal=terminal,
                  color_system="256" if terminal else None)
    experiment(out, report)
    return written.getvalue()


def test_the_terminal_report_fits_80_columns_plain_when_piped() -> None:
    text = rendered(fake_report())
    lines = text.splitlines()
    assert not ANSI.search(text), "no colour codes when the console is not a terminal"
    assert max(len(line) for line in lines) <= 80
    assert all(line == line.rstrip() for line in lines), "no trailing spaces"
    assert lines[0] == "experiment products-outage: Products is down for ten seconds (bus: log)"
    assert "direct-call" in text and "replicated" in text
    assert text.count("░░ products killed, 5.0-15.2 s") == 2, "the window named under each chart"
    assert "log scale" in text
    assert "░" in text, "the window is shaded in the chart"
    assert lines[-1] == ("valid: nothing lost, nothing twice; the read model equals the "
                         "monolith's join")
    assert " ".join(lines[-4].split()).startswith(
        "checked 100 confirmed purchases: 100 stored once, 100 replicated")


def test_the_figures_table_puts_the_faults_beside_the_rest() -> None:
    report = fake_report()
    text = rendered(report)
    rows = [" ".join(line.split()) for line in text.splitlines()]
    assert "direct-call during faults 200 0.0% - -" in rows
    assert "outside them 200 100.0% 3.40 11.8" in rows
    assert "replicated during faults 200 100.0% 1.00 2.90" in rows
    staleness = report["staleness"]
    assert (f"replicated staleness p50 {staleness['p50']:.1f} ms, p99 {staleness['p99']:.1f} "
            f"ms, max {staleness['max']:.1f} ms") in " ".join(text.split())
    assert "purchases 100 confirmed, 100 refused" in rows
    assert "recovery the read model caught up 400 ms after the load and the" in rows


def test_words_from_the_scenario_file_are_shown_as_written() -> None:
    report = fake_report(title="[bold]Products[/bold] \x1b[2J down")
    report["faults"][0]["label"] = "products [red]killed[/red]"
    text = rendered(report, terminal=True)
    assert "[bold]Products[/bold] \\x1b[2J down" in text, "no markup read, no escape sent"
    assert "products [red]killed[/red], 5.0-15.2 s" in text


def test_a_window_inside_another_is_shaded_apart_and_named_on_its_own_line() -> None:
    report = fake_report()
    report["faults"].append({"kind": "latency", "target": "users", "label": "users slow",
                             "start": 8.0, "end": 11.0})
    lines = rendered(report).splitlines()
    assert lines.count("  ░░ products killed, 5.0-15.2 s") == 2
    assert lines.count("  ▒▒ users slow, 8.0-11.0 s") == 2
    assert any("░▒" in line for line in lines)


def test_on_a_terminal_the_charts_are_coloured_unless_no_color() -> None:
    text = rendered(fake_report(), terminal=True)
    assert "\x1b[38;5;208m" in text, "direct-call's orange"
    assert max(len(re.sub(r"\x1b\[[0-9;]*m", "", line)) for line in text.splitlines()) <= 80
    written = io.StringIO()
    experiment(Console(file=written, width=80, force_terminal=True, no_color=True),
               fake_report())
    assert "38;5;" not in written.getvalue()


@pytest.mark.parametrize(("verdict", "problems", "line"), [
    ("invalid", ["3 confirmed purchases missing from the read model", "1 stored twice"],
     "invalid: 3 confirmed purchases missing from the read model; 1 stored twice"),
    ("unknown", ["the read model did not catch up within 30 s"],
     "unknown: the read model did not catch up within 30 s"),
])
def test_an_invalid_or_unknown_verdict_says_why(verdict: Verdict, problems: list[str],
                                                 line: str) -> None:
    report = fake_report(outcome={
        "verdict": verdict, "problems": problems, "recovered_in_s": None,
        "checked": {"confirmed": 100, "stored": 99, "replicated": 97, "verified_users": 0}})
    text = rendered(report)
    assert text.splitlines()[-1] == line
    assert "caught up" not in text, "no recovery to tell"


def test_a_report_without_any_answer_has_no_latency_chart() -> None:
    report = fake_report()
    for s in report["timeline"]:
        s["reads"] = {name: reads(0, 20, None, None) for name in s["reads"]}
    text = rendered(report)
    assert "latency: no read was answered" in text and "log scale" not in text


def test_report_files_names_the_page_first() -> None:
    out = Console(width=80, record=True)
    report_files(out, [Path("/tmp/run/index.html"), Path("/tmp/run/report.json")])
    assert out.export_text() == ("wrote /tmp/run/index.html (open it in a browser)\n"
                                 "wrote /tmp/run/report.json\n")


def test_the_page_is_one_offline_file_with_the_title_escaped() -> None:
    html = page(fake_report(title="Products <script>alert(1)</script> & down"))
    assert not re.search(r"<script[^>]*\bsrc=", html), "no script from the network"
    assert "<link" not in html
    assert html.count("plotly.js v") == 1, "plotly.js inside it, once"
    assert "<script>alert(1)" not in html
    assert "Products &lt;script&gt;alert(1)&lt;/script&gt; &amp; down" in html
    assert html.count("<div id=\"chart-") == 5
    assert "products killed" in html


def test_write_report_writes_the_page_and_the_figures(tmp_path: Path) -> None:
    report = fake_report()
    written = write_report(report, tmp_path / "run")
    assert written == [tmp_path / "run" / "index.html", tmp_path / "run" / "report.json"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["index.html",
                                                                    "report.json"]
    assert json.loads(written[1].read_text()) == report
    assert written[0].read_text().startswith("<!doctype html>")


def test_write_report_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(InvalidArgument) as refused:
        write_report(fake_report(), tmp_path / "run")
    assert "\n" not in refused.value.message
    assert refused.value.message.startswith(f"cannot write the report into {tmp_path / 'run'}")


def test_the_charting_libraries_load_only_when_drawing() -> None:
    code = ("import sys, msshop.render.experiments, msshop.instruments.experiments.page; "
            "print(sorted(m for m in ('plotext', 'plotly') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_what_a_crash_while_applying_hit_is_named_under_its_window() -> None:
    report = fake_report()
    detail = "killed at position 1,220,000 while applying 1,000,001 to 2,400,000 (backlog 3)"
    report["faults"].append({"kind": "crash-applying", "target": "query",
                             "label": "query killed while applying", "start": 8.0,
                             "end": 11.0, "detail": detail})
    text = rendered(report)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert " ".join(text.split()).count(
        "▒▒ query killed while applying, 8.0-11.0 s " + detail) == 2
    assert f"(crash-applying query): {detail}</li>" in page(report)
