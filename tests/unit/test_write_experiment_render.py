"""A purchases experiment's report (issue 27) drawn without a sandbox: the terminal's
within 80 columns, plain when piped, each strategy's verdict and what it found; the page,
one offline file. Its browser test: tests/e2e/test_experiment_page.py."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from msshop.instruments.experiments.page import write_report
from msshop.instruments.experiments.report import (
    Distribution,
    WriteFigures,
    WriteOutcome,
    WriteSecond,
    WritesReport,
)
from msshop.instruments.experiments.writes_page import writes_page
from msshop.render.write_experiments import write_experiment

STRATEGIES = ["monolith", "direct-call", "saga", "saga-orchestrated"]
ANSI = re.compile(r"\x1b\[")
LEAK = ("product 5: 1 taken for purchase w-direct-call-9 with no order — taken, never "
        "recorded nor given back (direct-call: orders stopped between the steps)")


def spread(p50: float, top: float) -> Distribution:
    return {"count": 100, "p50": p50, "p99": top * 0.9, "max": top}


def second(t: int, down: bool) -> WriteSecond:
    def one(name: str) -> dict[str, object]:
        saga = name.startswith("saga")
        failed = 10 if down and name == "direct-call" else 0
        return {"answered": {"confirmed": 0 if saga else 10 - failed, "rejected": 0,
                             "pending": 10 if saga else 0, "failed": failed},
                "ended": {"confirmed": 10 - failed, "rejected": 0, "pending": 0,
                          "failed": failed},
                "outcome_p50_ms": 4000.0 if down and saga else 5.0,
                "outcome_max_ms": 9000.0 if down and saga else 12.0,
                "pending_orders": (t - 4) * 10 if down and saga else 0,
                "stock_held": (t - 4) * 10 if down and saga else 0}

    return {"t": t, "strategies": {name: one(name) for name in STRATEGIES}}  # type: ignore[misc]


def fake_writes_report(title: str = "Purchases while products is down") -> WritesReport:
    figures: dict[str, WriteFigures] = {
        name: {"sent": 200, "confirmed": 100 if name == "direct-call" else 200,
               "rejected": 0, "pending": 0, "failed": 100 if name == "direct-call" else 0,
               "answered_pending": 200 if name.startswith("saga") else 0,
               "outcome_ms": spread(5.0, 9000.0 if name.startswith("saga") else 20.0),
               "pending_for_ms": spread(5.0, 9000.0) if name.startswith("saga") else
               {"count": 0, "p50": None, "p99": None, "max": None},
               "reasons": {}} for name in STRATEGIES}
    outcomes: dict[str, WriteOutcome] = {
        name: {"verdict": "invalid" if name == "direct-call" else "valid",
               "problems": [LEAK] if name == "direct-call" else [],
               "checked": {"confirmed": figures[name]["confirmed"],
                           "stored_once": figures[name]["confirmed"],
                           "scope": "products 1-4, users 1-8"}} for name in STRATEGIES}
    return {"workload": "purchases", "scenario": "writes-products-outage", "title": title,
            "shows": "direct-call fails while products is down; the sagas wait, pending.",
            "bus": "log", "started_at": "2026-12-05T10:00:00+00:00",
            "machine": "Linux x86_64, 2 cores", "seconds": 20, "purchase_rate": 10,
            "faults": [{"kind": "stop", "target": "products", "label": "products stopped",
                        "start": 4.0, "end": 16.1}],
            "strategies": STRATEGIES,
            "timeline": [second(t, 4 <= t < 16) for t in range(20)],
            "figures": figures, "outcomes": outcomes, "recovered_in_s": 0.8,
            "verdict": "invalid"}


def rendered(report: WritesReport) -> str:
    written = io.StringIO()
    write_experiment(Console(file=written, width=80), report)
    return written.getvalue()


def test_the_terminal_report_fits_80_columns_and_gives_each_strategy_its_verdict() -> None:
    text = rendered(fake_writes_report())
    lines = text.splitlines()
    assert not ANSI.search(text) and max(len(line) for line in lines) <= 80
    assert all(line == line.rstrip() for line in lines), "no trailing spaces"
    assert lines[0] == ("experiment writes-products-outage: Purchases while products is "
                        "down (bus: log)")
    for name in STRATEGIES:
        assert f"{name}: purchases each second" in text
    assert "orders pending (sampled)" in text and "products stopped, 4.0-16.1 s" in text
    assert "the slowest time to an outcome each second, ms (log)" in text
    assert "10 s┤" in text, "a saga's outage-long outcome on the log axis"
    joined = " ".join(text.split())
    assert "monolith: valid: 200 confirmed purchases stored once" in joined
    assert f"direct-call: invalid: {LEAK}" in joined
    assert "saga-orchestrated 200 answered pending, their outcome within p50 5.00 ms, " \
           "max 9,000 ms" in joined


def test_the_page_is_one_offline_file_with_every_verdict(tmp_path: Path) -> None:
    report = fake_writes_report(title="Products <b>down</b>")
    page = writes_page(report)
    assert "<b>down</b>" not in page and "Products &lt;b&gt;down&lt;/b&gt;" in page
    for chart in ("confirmed", "not-confirmed", "pending", "outcome"):
        assert f'id="chart-{chart}"' in page
    assert page.count('class="badge"') == 4 and "with no order" in page
    assert "plotly.js" in page.lower() and "<script src=" not in page  # inside, no fetch
    index, data = write_report(report, tmp_path / "run")
    assert index.read_text() == page and '"workload": "purchases"' in data.read_text()
