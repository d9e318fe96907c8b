"""Issue 28: Ask, and a link or a file broken, from the dashboard. The dashboard asks the
real query service as `msshop query` does, gathers the trace from every part, and names the
files the answer touched; a partition on a link shows on the page's link and in `msshop
status`, as `msshop chaos --to` would; a trespass is refused as `msshop trespass` is."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from msshop.contracts.credentials import bearer
from tests.conftest import Sandbox, running_sandbox
from tests.e2e.test_dashboard import ask, csrf_of, logged_in, login_of, status_of

WAIT = 10.0


@pytest.fixture(scope="module")
def seeded_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    # an orchestrated saga left waiting on a stopped service is not given up on mid-test
    with running_sandbox(tmp_path_factory.mktemp("ask") / "sandbox", MSSHOP_UI="1",
                         MSSHOP_SAGA_STEP_TIMEOUT="120") as sandbox:
        sandbox.run("seed", "--users", "10", "--products", "5", "--orders", "40", "--wait",
                    check=True)
        yield sandbox


def asked(address: dict[str, Any], session: str, query: str) -> tuple[int, dict[str, Any]]:
    answer = ask(address, "GET", f"/ask?{query}", {"Cookie": session})
    return answer.status, json.loads(answer.read())


def act(address: dict[str, Any], session: str, csrf: str, **asked: str
        ) -> tuple[int, dict[str, Any]]:
    port = urlsplit(address["url"]).port
    answer = ask(address, "POST", "/action", {
        "Cookie": session, "Origin": f"http://127.0.0.1:{port}", "x-csrf-token": csrf,
        "content-type": "application/json"}, body=json.dumps(asked))
    return answer.status, json.loads(answer.read())


def cli_orders(sandbox: Sandbox, user: int, strategy: str) -> list[dict[str, Any]]:
    said = json.loads(sandbox.run("query", "--user", str(user), "--strategy", strategy,
                                  "--json", check=True).stdout)
    orders: list[dict[str, Any]] = said["answer"]["orders"]
    return orders


def test_an_ask_from_the_dashboard_is_the_cli_s_answer_with_its_trace(seeded_ui: Sandbox
                                                                       ) -> None:
    address = login_of(seeded_ui)
    session = logged_in(address)
    status, body = asked(address, session, "user=3&strategy=compare")
    assert status == 200 and body["user"] == 3
    answers = {a["strategy"]: a for a in body["answers"]}
    assert list(answers) == ["direct-call", "replicated"]
    for strategy, answer in answers.items():
        assert answer["status"] == 200 and answer["error"] is None
        assert answer["answer"]["orders"] == cli_orders(seeded_ui, 3, strategy)
        spans = answer["spans"]
        root = next(s for s in spans if s["parent_id"] is None)
        assert root["service"] == "ui" and root["trace_id"] == answer["trace_id"]
        assert all(s["trace_id"] == answer["trace_id"] for s in spans)
    direct = answers["direct-call"]
    assert {s["service"] for s in direct["spans"]} >= {"ui", "query", "users", "orders",
                                                        "products"}
    assert direct["touched"] == ["orders.db", "products.db", "users.db"]
    assert answers["replicated"]["touched"] == ["query.db"]
    # each link's calls, counted by the caller, from which the page draws its calls/s
    calls = look(address, session)["query"]["calls"]
    assert {"users", "orders", "products"} <= calls.keys() and min(calls.values()) >= 1
    asked(address, session, "user=3&strategy=direct-call")
    deadline = time.monotonic() + WAIT  # a look is kept for a second: /state may be older
    while look(address, session)["query"]["calls"]["users"] != calls["users"] + 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_bad_ask_is_one_line(seeded_ui: Sandbox) -> None:
    address = login_of(seeded_ui)
    session = logged_in(address)
    for query, words in (("user=abc&strategy=replicated", "user must be a whole number"),
                         ("user=0&strategy=replicated", "user must be a whole number"),
                         ("strategy=replicated", "user must be a whole number"),
                         ("user=1&strategy=monolith", "msshop query --strategy monolith"),
                         ("user=1&strategy=fast", "direct-call, replicated, compare")):
        status, body = asked(address, session, query)
        assert status == 422 and words in body["error"], (query, body)
        assert "\n" not in body["error"]
    # a user nobody signed up: the query service's own line, and the trace of it
    status, body = asked(address, session, "user=999999&strategy=direct-call")
    assert status == 200
    unknown = body["answers"][0]
    assert unknown["status"] == 404 and "999999" in unknown["error"]
    assert unknown["answer"] is None and unknown["spans"][0]["status"] == "error"
    assert ask(address, "GET", "/ask?user=1&strategy=replicated").status == 401  # no session


def look(address: dict[str, Any], session: str) -> dict[str, dict[str, Any]]:
    answer = ask(address, "GET", "/state", {"Cookie": session})
    return {part["name"]: part for part in json.loads(answer.read())["parts"]}


def test_a_partition_from_the_page_is_on_its_link_and_in_status(seeded_ui: Sandbox) -> None:
    address = login_of(seeded_ui)
    session = logged_in(address)
    csrf = csrf_of(address, session)
    assert act(address, session, csrf, part="query", action="partition", to="users") == (
        200, {"done": "every call from query to users fails"})
    assert status_of(seeded_ui, "query")["chaos"]["links"]["users"]["error_rate"] == 1
    deadline = time.monotonic() + WAIT
    while look(address, session)["query"]["links"] != {"users": "partitioned"}:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    _, body = asked(address, session, "user=3&strategy=compare")
    direct, replicated = body["answers"]
    assert direct["status"] == 503 and "users" in direct["error"]
    assert replicated["status"] == 200, "the read model answers without users"
    assert act(address, session, csrf, part="query", action="mend", to="users")[0] == 200
    assert not status_of(seeded_ui, "query").get("chaos")
    assert look(address, session)["query"]["links"] == {}
    # what a link may not be: one line each
    for asked_for, words in (({"part": "query", "action": "partition"}, "takes a `to`"),
                             ({"part": "query", "action": "kill", "to": "users"},
                              "takes no `to`"),
                             ({"part": "query", "action": "partition", "to": "query"},
                              "another service"),
                             ({"part": "query", "action": "partition", "to": "ui"},
                              "another service"),
                             ({"part": "bus", "action": "partition", "to": "users"},
                              "calls no other service")):
        status, answer = act(address, session, csrf, **asked_for)
        assert status == 422 and words in answer["error"], (asked_for, answer)


def test_the_sagas_in_flight_are_what_orders_knows_of_them(seeded_ui: Sandbox) -> None:
    """A saga of each kind left pending while products is stopped: orders counts both, and
    the page lists each with its step. The orchestrated one's is orders' row, as `msshop
    sagas` says it; the choreographed one's cannot be told with products down (no one
    service knows it), and with users down instead only products' half of it, where
    `msshop sagas`, reading the files, tells it whole. Both end once all are back."""
    address = login_of(seeded_ui)
    session = logged_in(address)

    def flying() -> dict[str, Any]:
        found: dict[str, Any] = look(address, session)["orders"]["in_flight"]
        return found

    def listed() -> dict[int, dict[str, Any]]:
        answer = ask(address, "GET", "/state", {"Cookie": session})
        return {saga["order_id"]: saga for saga in json.loads(answer.read())["sagas"]}

    def cli() -> dict[int, dict[str, Any]]:
        said = json.loads(seeded_ui.run("sagas", "--json", check=True).stdout)
        return {saga["order_id"]: saga for saga in said["sagas"]}

    def until(condition: Any, what: Any) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            assert time.monotonic() < deadline, what()
            time.sleep(0.1)

    def bought(write: str) -> int:
        answer = seeded_ui.run("buy", "--user", "4", "--product", "2", "--write", write,
                               "--json")
        assert answer.returncode == 3, answer.stderr  # pending
        order_id: int = json.loads(answer.stdout)["order"]["id"]
        return order_id

    assert flying() == {"saga": 0, "saga_orchestrated": {}}
    seeded_ui.run("stop", "products", check=True)
    try:
        choreographed, orchestrated = bought("saga"), bought("saga-orchestrated")
        until(lambda: flying() == {"saga": 1, "saga_orchestrated": {"taking-stock": 1}},
              flying)
        until(lambda: set(listed()) == {choreographed, orchestrated}, listed)
        sagas, said = listed(), cli()
        assert sagas[orchestrated]["waits_for"] == said[orchestrated]["waits_for"] == \
            "products"
        assert sagas[orchestrated]["step"].startswith("TakeStock sent; no answer yet")
        assert sagas[choreographed]["waits_for"] == "", sagas[choreographed]
        assert sagas[choreographed]["step"].startswith(
            "cannot be told: products not running (connection refused)")
        assert said[choreographed]["waits_for"] == "products"  # the files tell
        seeded_ui.run("stop", "users", check=True)
    finally:
        seeded_ui.run("start", "products", check=True)
    try:
        # products takes the stock of both; users, stopped, takes no credit
        until(lambda: listed()[orchestrated]["waits_for"] == "users", listed)
        sagas, said = listed(), cli()
        assert (sagas[orchestrated]["waits_for"], sagas[orchestrated]["step"].split(" (")[0]
                ) == (said[orchestrated]["waits_for"], said[orchestrated]["step"].split(" (")[0]
                      ) == ("users", "the stock taken; TakeCredit sent, no answer yet")
        # products says it took the stock; whether users took the credit, users alone knows
        assert (sagas[choreographed]["waits_for"], sagas[choreographed]["step"]) == (
            "", "the stock taken; whether users took the credit cannot be told: users not "
                "running (connection refused)")
        assert said[choreographed]["step"] == "the stock taken; the credit not taken yet"
    finally:
        seeded_ui.run("start", "users", check=True)
    until(lambda: flying() == {"saga": 0, "saga_orchestrated": {}}, flying)
    until(lambda: listed() == {}, listed)


def test_the_sagas_routes_are_the_owner_s(seeded_ui: Sandbox) -> None:
    """Orders' GET /sagas and the participants' POST /saga/progress name purchases: the
    owner's token, or a 401 that says so; a question too big is a 422."""
    client = seeded_ui.client()
    status, answer = client.exchange("orders", "GET", "/sagas")
    assert (status, answer["error"].split(":")[0]) == (
        401, "reading the sagas in flight needs the sandbox's token")
    asked = {"purchases": [{"order_id": 1, "purchase": "p-1"}]}
    for service in ("products", "users"):
        status, answer = client.exchange(service, "POST", "/saga/progress", asked)
        assert (status, answer["error"].split(":")[0]) == (
            401, "reading a saga's progress needs the sandbox's token")
    owner = bearer(client.state.token)
    status, answer = client.exchange("products", "POST", "/saga/progress", asked, owner)
    assert status == 200 and answer == {
        "service": "products", "done": [{"order_id": 1, "steps": [], "held": None}]}
    too_many = {"purchases": [{"order_id": i, "purchase": f"p-{i}"} for i in range(1, 52)]}
    status, answer = client.exchange("users", "POST", "/saga/progress", too_many, owner)
    assert status == 422 and "purchases" in answer["error"], answer
    status, answer = client.exchange("orders", "GET", "/sagas?limit=51", None, owner)
    assert status == 422 and "limit" in answer["error"], answer


def test_poison_from_the_page_is_dead_lettered(seeded_ui: Sandbox) -> None:
    """The button appends as users would (the owner's power, as `msshop poison`); the
    read model dead-letters it, as `msshop deadletters` shows."""
    address = login_of(seeded_ui)
    session = logged_in(address)
    csrf = csrf_of(address, session)
    status, answer = act(address, session, csrf, part="bus", action="poison")
    assert status == 200 and answer["done"].startswith("a Poison event is at bus position")
    position = int(answer["done"].split("position ")[1].split(":")[0])
    deadline = time.monotonic() + WAIT
    while True:
        dead = json.loads(seeded_ui.run("deadletters", "--json", check=True).stdout)
        if any(d["position"] == position for d in dead["dead_letters"]):
            break
        assert time.monotonic() < deadline, dead
        time.sleep(0.2)
    assert act(address, session, csrf, part="users", action="poison")[0] == 422


def test_poison_from_the_page_on_nats(tmp_path: Path) -> None:
    """On msshop's nats bus the dashboard signs in as users for it (the `ui` user may
    publish no event), and the read model dead-letters it there too."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_UI="1",
                         MSSHOP_BUS_BACKEND="nats") as sandbox:
        address = login_of(sandbox)
        session = logged_in(address)
        status, answer = act(address, session, csrf_of(address, session), part="bus",
                             action="poison")
        assert status == 200, answer
        deadline = time.monotonic() + WAIT
        while not json.loads(sandbox.run("deadletters", "--json", check=True).stdout)[
                "dead_letters"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_a_trespass_from_the_page_is_refused_as_the_cli_s(seeded_ui: Sandbox) -> None:
    address = login_of(seeded_ui)
    session = logged_in(address)
    csrf = csrf_of(address, session)
    status, answer = act(address, session, csrf, part="users", action="trespass",
                         to="products")
    cli = json.loads(seeded_ui.run("trespass", "users", "--into", "products", "--json",
                                   check=True).stdout)
    assert status == 200, answer
    assert answer["done"] == f"users tried to open products's file: {cli['refused']}"
    assert "products.db" in cli["refused"]


ORDERS_ROWS = ("Object.values(window.__snapshot.parts.find(p => p.name === 'orders').rows)"
               ".reduce((a, b) => a + b, 0)")


def test_in_a_browser_ask_break_and_watch(seeded_ui: Sandbox) -> None:
    """A real headless Chromium at 1280x720: an ask from the page is the CLI's answer, its
    waterfall drawn and its files lit; a partition from the page is drawn on its link and
    in `msshop status`; the monolith's picture on a toggle; the page within 250 ms of the
    sandbox (a purchase's row on the page, timed from the CLI's answer); no console
    errors. With MSSHOP_SCREENSHOTS=DIR, each view is saved there (docs/dashboard.md's)."""
    import asyncio
    import base64
    import os
    import statistics
    from pathlib import Path

    from tests.browser import WATCH_ERRORS, Page, with_page

    address = login_of(seeded_ui)
    shots = os.environ.get("MSSHOP_SCREENSHOTS")

    async def until(page: Page, expression: str, within: float = WAIT) -> float:
        began = time.monotonic()
        while not await page.evaluate(expression):
            assert time.monotonic() - began < within, expression
            await asyncio.sleep(0.01)
        return time.monotonic() - began

    async def shot(page: Page, name: str) -> None:
        if shots:
            taken = await page.send("Page.captureScreenshot", format="png")
            (Path(shots) / f"dashboard-{name}.png").write_bytes(base64.b64decode(taken["data"]))

    async def test(page: Page) -> None:
        await page.send("Page.enable")
        await page.send("Page.addScriptToEvaluateOnNewDocument", source=WATCH_ERRORS)
        await page.send("Emulation.setDeviceMetricsOverride", width=1280, height=720,
                        deviceScaleFactor=1, mobile=False)
        await page.open(address["login"])
        # GET /history may seed the chart before the first live snapshot is drawn
        await until(page, "window.__snapshot !== undefined && window.__history >= 3")
        assert await page.evaluate("[document.documentElement.scrollWidth, "
                                   "document.documentElement.scrollHeight]") == [1280, 720]
        # the page within 250 ms of the sandbox: a purchase, from its answer to its row
        delays = []
        for _ in range(8):
            before = await page.evaluate(ORDERS_ROWS)
            await asyncio.to_thread(seeded_ui.run, "buy", "--user", "2", "--product", "1",
                                    check=True)
            delays.append(await until(page, f"{ORDERS_ROWS} > {before}"))
        print(f"page behind the sandbox: median {statistics.median(delays) * 1000:.0f} ms, "
              f"at most {max(delays) * 1000:.0f} ms")
        assert statistics.median(delays) <= 0.25 and max(delays) <= 1.0, delays
        await shot(page, "topology")
        # Ask: the replicated answer, as the CLI gives it
        await page.evaluate("document.getElementById('user').value = '3';"
                            "document.getElementById('strategy').value = 'replicated';"
                            "document.querySelector('#ask button').click()")
        await until(page, "window.__asked !== undefined")
        shown = await page.evaluate("window.__asked.answers[0].answer.orders")
        assert shown == await asyncio.to_thread(cli_orders, seeded_ui, 3, "replicated")
        assert await page.evaluate("document.querySelectorAll('#answers .bar').length") == \
            await page.evaluate("window.__asked.answers[0].spans.length")
        lit = "[...document.querySelectorAll('.part.touched')].map(p => p.dataset.part)"
        assert await page.evaluate(lit) == ["query"]
        await page.evaluate("window.__asked = undefined;"
                            "document.getElementById('strategy').value = 'compare';"
                            "document.querySelector('#ask button').click()")
        await until(page, "window.__asked !== undefined")
        assert sorted(await page.evaluate(lit)) == ["orders", "products", "query", "users"]
        used = "[...document.querySelectorAll('.link.used')].map(l => l.id)"
        assert sorted(await page.evaluate(used)) == [
            "link-query-orders", "link-query-products", "link-query-users"]
        await shot(page, "ask")
        # a part of the picture, focused and Enter: it is the part to break, in Break it
        await page.evaluate("const box = document.getElementById('part-orders'); box.focus();"
                            "box.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}))")
        assert await page.evaluate("[document.getElementById('target').value, document"
                                   ".getElementById('tab-break').getAttribute("
                                   "'aria-selected')]") == ["orders", "true"]
        # Break it: a partition on query -> users, drawn on that link, in msshop status
        await page.evaluate("document.getElementById('tab-break').click();"
                            "document.getElementById('link').value = 'query users';"
                            "document.querySelector('[data-link=partition]').click()")
        await until(page, "document.getElementById('label-query-users').textContent"
                          " === 'partitioned'")
        status = await asyncio.to_thread(status_of, seeded_ui, "query")
        assert status["chaos"]["links"]["users"]["error_rate"] == 1
        await shot(page, "break")
        await page.evaluate("document.querySelector('[data-link=mend]').click()")
        await until(page, "!document.querySelector('#link-query-users').classList"
                          ".contains('faulty')")
        # Watch: a purchase's event on the list within a second of its answer
        await page.evaluate("document.getElementById('tab-watch').click()")
        assert await page.evaluate("document.getElementById('panel-watch').hidden") is False
        bought = json.loads((await asyncio.to_thread(
            seeded_ui.run, "buy", "--user", "5", "--product", "2", "--json",
            check=True)).stdout)
        took = await until(page, "[...document.querySelectorAll('#events li')].some(li =>"
                                 f" li.textContent.includes('id={bought['order']['id']} '))")
        assert took <= 1.0, f"the event was on the page {took:.2f} s after the answer"
        # the questions the query service answered last; one opens in Ask, whole
        await page.evaluate("document.getElementById('list-traces').click()")
        await until(page, "(window.__traces || []).length > 0")
        await page.evaluate("document.querySelector('#traces button').click()")
        await until(page, "window.__trace !== undefined")
        opened = await page.evaluate("window.__trace")
        assert {s["service"] for s in opened["spans"]} >= {"query"}
        assert await page.evaluate("document.querySelectorAll('#answers .bar').length") == \
            len(opened["spans"])
        await page.evaluate("document.getElementById('tab-watch').click()")
        # a purchase's saga left waiting on products, stopped: listed with its step, and
        # products' box says a saga waits for it
        await asyncio.to_thread(seeded_ui.run, "stop", "products", check=True)
        try:
            pending = await asyncio.to_thread(
                seeded_ui.run, "buy", "--user", "6", "--product", "3", "--write",
                "saga-orchestrated", "--json")
            assert pending.returncode == 3, pending.stderr
            order_id = json.loads(pending.stdout)["order"]["id"]
            choreographed = await asyncio.to_thread(
                seeded_ui.run, "buy", "--user", "6", "--product", "3", "--write", "saga")
            assert choreographed.returncode == 3, choreographed.stderr
            await until(page, "[...document.querySelectorAll('#sagas li')].some(li => li"
                              f".textContent.startsWith('order {order_id} · orchestrated')"
                              " && li.textContent.includes('waits for products'))")
            await until(page, "[...document.querySelectorAll('#sagas li')].some(li => li"
                              ".textContent.includes('choreographed') && li.textContent"
                              ".includes('cannot be told: products not running'))")
            await until(page, "document.querySelector('#part-products .line2').textContent"
                              " === '1 saga waits'")
            await shot(page, "watch")
        finally:
            await asyncio.to_thread(seeded_ui.run, "start", "products", check=True)
        await until(page, "document.querySelectorAll('#sagas li').length === 0")
        await page.evaluate("document.getElementById('monolith-toggle').click()")
        assert await page.evaluate("getComputedStyle(document.getElementById('shop'))"
                                   ".display") == "none"
        assert "orders" in await page.evaluate(
            "document.getElementById('monolith-rows').textContent")
        await shot(page, "monolith")
        await page.evaluate("document.getElementById('monolith-toggle').click()")
        # an experiment from the page: its lanes fill in, then its verdicts
        await page.evaluate("document.getElementById('tab-experiments').click()")
        await until(page, "document.getElementById('scenario').options.length > 0")
        await page.evaluate("document.getElementById('scenario').value = 'writes-crashes';"
                            "document.getElementById('seconds').value = '4';"
                            "document.getElementById('run-experiment').click()")
        await until(page, "window.__run !== undefined && window.__run.seconds.length >= 2",
                    60)
        await shot(page, "experiment-running")
        await until(page, "window.__run.state !== 'running'", 120)
        run = await page.evaluate("window.__run")  # each strategy's verdict (which one each
        # gets under crashes: tests/e2e/test_write_experiments.py)
        assert set(run["verdicts"]) == {"monolith", "direct-call", "saga",
                                        "saga-orchestrated"}, run
        assert run["verdicts"]["saga"] == "valid", run
        assert await page.evaluate(
            "document.querySelectorAll('#run-chart polyline').length") == 8  # 4 lanes
        await until(page, "(window.__runs || []).length === 1")
        await shot(page, "experiment")
        assert await page.evaluate("window.__errors") == []

    asyncio.run(with_page("about:blank", test))
