"""`msshop trace --export html` opened in a real headless Chromium: the bars are drawn where
the spans ran, a click shows that span's details, and a replicated answer's rows show the
events they came from. Skips, saying how to get one, where no Chromium is installed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.browser import Page, with_page
from tests.conftest import Sandbox

BARS = """[...document.querySelectorAll('.bar')].map(b => {
  const r = b.getBoundingClientRect();
  return {span: b.dataset.span, left: r.left, right: r.right, top: r.top,
          bottom: r.bottom, width: r.width};
})"""


def exported(sandbox: Sandbox, tmp_path: Path, strategy: str) -> tuple[dict[str, Any], Path]:
    asked = json.loads(sandbox.run("query", "--user", "3", "--strategy", strategy, "--json",
                                   check=True).stdout)
    page = tmp_path / f"{strategy}.html"
    wrote = sandbox.run("trace", asked["trace_id"], "--export", "html", "--output", str(page),
                        check=True).stdout
    assert wrote.startswith(f"wrote {page} (") and wrote.rstrip().endswith("bytes, html)")
    return asked, page


def test_the_page_draws_every_span_and_a_click_shows_its_details(shared_sandbox: Sandbox,
                                                                  tmp_path: Path) -> None:
    shared_sandbox.run("seed", "--users", "10", "--products", "5", "--orders", "40",
                       check=True)
    asked, page = exported(shared_sandbox, tmp_path, "direct-call")
    text = page.read_text()
    assert "http://" not in text and "https://" not in text, "nothing from the network"
    spans = {s["span_id"]: s for s in asked["spans"]}

    async def test(browser: Page) -> None:
        bars = {b["span"]: b for b in await browser.evaluate(BARS)}
        assert bars.keys() == spans.keys(), "a bar for every span"
        assert all(b["width"] >= 1 for b in bars.values())
        calls = {spans[i]["attributes"].get("peer.service"): bars[i] for i in spans
                 if spans[i]["kind"] == "client" and spans[i]["service"] == "query"}
        users, orders, products = calls["users"], calls["orders"], calls["products"]
        assert users["left"] < orders["right"] and orders["left"] < users["right"], \
            "users and orders were asked at once"
        assert products["left"] >= min(users["right"], orders["right"]) - 2, \
            "products after them"
        assert "Click a bar" in await browser.evaluate(
            "document.querySelector('.details').textContent")
        select = next(i for i, s in spans.items() if s["service"] == "users"
                      and s["attributes"].get("db.operation") == "SELECT")
        bar = bars[select]
        await browser.click((bar["left"] + bar["right"]) / 2, (bar["top"] + bar["bottom"]) / 2)
        details = await browser.evaluate("document.querySelector('.details').textContent")
        assert details.startswith(f"users · {spans[select]['name']}")
        assert "db.nameusers.db" in details and f"span id{select}" in details
        assert await browser.evaluate(
            "document.querySelector('.bar.selected').dataset.span") == select

    asyncio.run(with_page(page, test))


def test_a_replicated_answer_shows_the_events_its_rows_came_from(shared_sandbox: Sandbox,
                                                                 tmp_path: Path) -> None:
    shared_sandbox.run("seed", "--users", "10", "--products", "5", "--orders", "40",
                       check=True)
    asked, page = exported(shared_sandbox, tmp_path, "replicated")
    read = next(s for s in asked["spans"] if "msshop.events" in s["attributes"])

    async def test(browser: Page) -> None:
        bar = next(b for b in await browser.evaluate(BARS) if b["span"] == read["span_id"])
        await browser.click((bar["left"] + bar["right"]) / 2, (bar["top"] + bar["bottom"]) / 2)
        lineage = await browser.evaluate(
            "[...document.querySelectorAll('.lineage li')].map(li => li.textContent)")
        kind, source, position = read["attributes"]["msshop.events"][0]
        assert lineage[0] == f"{kind} from {source} at bus position {position}"
        assert len(lineage) == len(read["attributes"]["msshop.events"])

    asyncio.run(with_page(page, test))


def test_an_export_into_a_file_that_cannot_be_written_is_one_line(shared_sandbox: Sandbox,
                                                                  tmp_path: Path) -> None:
    shared_sandbox.run("query", "--user", "1", "--strategy", "replicated", check=True)
    alone = shared_sandbox.run("trace", "last", "--output", str(tmp_path / "t.html"))
    assert alone.returncode == 2 and "--output FILE goes with --export FORMAT" in alone.stderr
    nowhere = tmp_path / "missing" / "t.html"
    failed = shared_sandbox.run("trace", "last", "--export", "html", "--output", str(nowhere))
    assert failed.returncode == 2
    assert failed.stderr.strip() == (f"error: cannot write {nowhere}: No such file or "
                                     "directory; choose another --output")
