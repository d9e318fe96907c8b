"""`msshop experiment --report DIR`'s page opened in a real headless Chromium from file://:
plotly draws every chart (the fault windows shaded and named), nothing comes from the
network, nothing goes wrong in the console, and a title from the scenario's file shows as
text. Skips, saying how to get one, where no Chromium is installed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from msshop.instruments.experiments.page import write_report
from tests.browser import WATCH_ERRORS, Page, with_page
from tests.unit.test_experiment_render import fake_report
from tests.unit.test_write_experiment_render import fake_writes_report

TITLE = "Products <script>alert(1)</script> is down"

CHARTS = """[...document.querySelectorAll('.js-plotly-plot')].map(chart => ({
  id: chart.id,
  svgs: chart.querySelectorAll('svg.main-svg').length,
  traces: chart.querySelectorAll('.scatterlayer .trace, .barlayer .trace').length,
  shapes: chart.querySelectorAll('.shapelayer path').length,
  notes: [...chart.querySelectorAll('.annotation-text')].map(a => a.textContent),
  width: chart.getBoundingClientRect().width,
}))"""


def test_the_page_draws_every_chart_offline_without_errors(tmp_path: Path) -> None:
    index, _ = write_report(fake_report(title=TITLE), tmp_path / "run")

    async def test(browser: Page) -> None:
        await browser.send("Page.enable")
        await browser.send("Page.addScriptToEvaluateOnNewDocument", source=WATCH_ERRORS)
        await browser.open(index)  # again, now watched from the start
        await browser.evaluate("new Promise(r => requestAnimationFrame(() => r(true)))")
        charts = {c["id"]: c for c in await browser.evaluate(CHARTS)}
        assert list(charts) == ["chart-availability", "chart-latency", "chart-purchases",
                                "chart-staleness-over-time", "chart-staleness"]
        assert all(c["svgs"] >= 2 and c["width"] > 600 for c in charts.values())
        assert charts["chart-availability"]["traces"] == 2, "a line per strategy"
        assert charts["chart-latency"]["traces"] == 4, "p50 and p99 per strategy"
        for name in ("chart-availability", "chart-latency", "chart-purchases",
                     "chart-staleness-over-time"):
            assert charts[name]["shapes"] >= 1, f"{name}: the fault window shaded"
            assert "products killed" in charts[name]["notes"], f"{name}: and named"
        assert charts["chart-staleness"]["traces"] >= 1
        assert await browser.evaluate("document.querySelector('h1').textContent") == TITLE
        assert await browser.evaluate("window.__errors") == []
        fetched = await browser.evaluate(
            "performance.getEntriesByType('resource').map(r => r.name)"
            ".filter(n => !n.startsWith('file:') && !n.startsWith('data:'))")
        assert fetched == [], "nothing from the network"

    asyncio.run(with_page(index, test))


def test_a_purchases_page_draws_every_write_strategys_charts(tmp_path: Path) -> None:
    index, _ = write_report(fake_writes_report(), tmp_path / "writes")

    async def test(browser: Page) -> None:
        await browser.send("Page.enable")
        await browser.send("Page.addScriptToEvaluateOnNewDocument", source=WATCH_ERRORS)
        await browser.open(index)
        await browser.evaluate("new Promise(r => requestAnimationFrame(() => r(true)))")
        charts = {c["id"]: c for c in await browser.evaluate(CHARTS)}
        assert list(charts) == ["chart-confirmed", "chart-not-confirmed", "chart-pending",
                                "chart-outcome"]
        assert all(c["svgs"] >= 2 and c["width"] > 600 for c in charts.values())
        assert charts["chart-confirmed"]["traces"] == 4, "a line per write strategy"
        assert charts["chart-pending"]["traces"] == 8, "orders and stock per strategy"
        for chart in charts.values():
            assert "products stopped" in chart["notes"], chart["id"]
        assert await browser.evaluate("window.__errors") == []

    asyncio.run(with_page(index, test))
