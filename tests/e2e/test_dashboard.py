"""Issue 28, the live dashboard's first part: a process the supervisor runs beside the
services (`up --ui`), `msshop ui` printing its login, and nobody else getting in: each
refused case tried against the real process over real sockets. Then its live stream: a
service killed from the CLI is down in the next looks, every part up again once it is
started."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import Sandbox, running_sandbox, sandbox_env

WAIT = 10.0  # seconds a test waits for a look that shows a change (far above the 0.5 s)


@pytest.fixture(scope="module")
def with_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("ui") / "sandbox", MSSHOP_UI="1") as sandbox:
        yield sandbox


def login_of(sandbox: Sandbox) -> dict[str, Any]:
    said = sandbox.run("ui", "--json")
    assert said.returncode == 0, said.stderr
    address: dict[str, Any] = json.loads(said.stdout)
    return address


def ask(address: dict[str, Any], method: str, path: str, headers: dict[str, str] | None = None,
        host: str | None = None, body: str | None = None) -> http.client.HTTPResponse:
    port = urlsplit(address["url"]).port
    assert port is not None
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    sent = {"Host": host or f"127.0.0.1:{port}", **(headers or {})}
    connection.request(method, path, body=body, headers=sent)
    return connection.getresponse()


def login_path(address: dict[str, Any]) -> str:
    parts = urlsplit(address["login"])
    return f"{parts.path}?{parts.query}"


def logged_in(address: dict[str, Any]) -> str:
    """The session cookie (name=value) the login address gives."""
    answer = ask(address, "GET", login_path(address))
    assert answer.status == 303 and answer.getheader("location") == "/"
    return str(answer.getheader("set-cookie")).split(";")[0]


def test_up_ui_runs_the_dashboard_as_a_part_and_ui_prints_its_login(with_ui: Sandbox) -> None:
    status = json.loads(with_ui.run("status", "--json").stdout)
    ui = next(s for s in status["services"] if s["name"] == "ui")
    assert ui["status"] == "running" and ui["health"] == "ok"
    address = login_of(with_ui)
    assert address["pid"] == ui["pid"] and address["url"].startswith("http://127.0.0.1:")
    said = with_ui.run("ui")
    assert said.stdout.splitlines()[0] == address["login"]  # alone on its line, to copy
    assert "the token is new each time the dashboard starts" in " ".join(said.stdout.split())


def test_nobody_else_gets_in(with_ui: Sandbox) -> None:
    address = login_of(with_ui)
    port = urlsplit(address["url"]).port
    for token in ("wrong", ""):
        refused = ask(address, "GET", f"/login?token={token}")
        assert refused.status == 403 and b"msshop ui" in refused.read()
    answer = ask(address, "GET", login_path(address))
    assert answer.status == 303
    cookie = str(answer.getheader("set-cookie"))
    assert cookie.startswith(f"msshop-ui-{port}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    session = cookie.split(";")[0]
    assert ask(address, "GET", "/").status == 401  # no cookie, no page
    assert ask(address, "GET", "/state").status == 401
    assert ask(address, "GET", "/", {"Cookie": "msshop-ui-1=forged"}).status == 401
    page = ask(address, "GET", "/", {"Cookie": session})
    assert page.status == 200
    body = page.read().decode()
    policy = str(page.getheader("content-security-policy"))
    assert "script-src 'nonce-" in policy and "default-src 'none'" in policy
    assert page.getheader("x-frame-options") == "DENY"
    assert page.getheader("referrer-policy") == "no-referrer"
    assert "http://" not in body and "https://" not in body, "nothing fetched from elsewhere"
    assert address["login"].rsplit("=", 1)[1] not in body, "the login token is in no page"
    # DNS rebinding: a name that points at 127.0.0.1 but is not a loopback name
    for path in ("/", "/state", login_path(address), "/health"):
        foreign = ask(address, "GET", path, {"Cookie": session}, host=f"evil.example:{port}")
        assert foreign.status == 403, path
        assert b"not this dashboard's address" in foreign.read()
    assert ask(address, "GET", "/state", {"Cookie": session},
               host=f"localhost:{port}").status == 200
    # an action needs the page's CSRF token and the dashboard's own origin
    csrf = body.split('name="csrf" content="')[1].split('"')[0]
    origin = f"http://127.0.0.1:{port}"
    for headers in ({"Cookie": session, "Origin": origin},
                    {"Cookie": session, "Origin": origin, "x-csrf-token": "guessed"},
                    {"Cookie": session, "x-csrf-token": csrf},
                    {"Cookie": session, "Origin": "http://evil.example", "x-csrf-token": csrf}):
        refused = ask(address, "POST", "/logout", headers)
        assert refused.status == 403, headers
        assert set(json.loads(refused.read())) == {"error", "status", "service"}
    assert ask(address, "GET", "/state", {"Cookie": session}).status == 200  # still in
    out = ask(address, "POST", "/logout", {"Cookie": session, "Origin": origin,
                                           "x-csrf-token": csrf})
    assert out.status == 204 and "Max-Age=0" in str(out.getheader("set-cookie"))
    assert ask(address, "GET", "/state", {"Cookie": session}).status == 401


def test_a_new_start_makes_a_new_token_and_ends_every_session(with_ui: Sandbox) -> None:
    before = login_of(with_ui)
    session = logged_in(before)
    with_ui.run("restart", "ui", check=True)
    after = login_of(with_ui)
    assert after["login"] != before["login"] and after["pid"] != before["pid"]
    assert ask(after, "GET", login_path(before)).status == 403
    assert ask(after, "GET", "/state", {"Cookie": session}).status == 401
    assert ask(after, "GET", "/state", {"Cookie": logged_in(after)}).status == 200


def action(address: dict[str, Any], session: str, csrf: str, part: str, what: str
           ) -> tuple[int, dict[str, Any]]:
    port = urlsplit(address["url"]).port
    answer = ask(address, "POST", "/action", {
        "Cookie": session, "Origin": f"http://127.0.0.1:{port}", "x-csrf-token": csrf,
        "content-type": "application/json"}, body=json.dumps({"part": part, "action": what}))
    return answer.status, json.loads(answer.read())


def csrf_of(address: dict[str, Any], session: str) -> str:
    body = ask(address, "GET", "/", {"Cookie": session}).read().decode()
    return body.split('name="csrf" content="')[1].split('"')[0]


def status_of(sandbox: Sandbox, name: str) -> dict[str, Any]:
    status = json.loads(sandbox.run("status", "--json").stdout)
    found: dict[str, Any] = next(s for s in status["services"] if s["name"] == name)
    return found


def test_break_it_from_the_dashboard_as_the_cli_would(with_ui: Sandbox) -> None:
    """The page's buttons: kill, start, slow, heal; each effect where the CLI's would be
    (`msshop status`); what it may not do is one line (422); no CSRF token, no action."""
    address = login_of(with_ui)
    session = logged_in(address)
    csrf = csrf_of(address, session)
    assert action(address, session, csrf, "products", "kill") == (
        200, {"done": "products killed by SIGKILL"})
    assert status_of(with_ui, "products")["status"] == "crashed"
    assert action(address, session, csrf, "products", "start")[0] == 200
    assert status_of(with_ui, "products")["status"] == "running"
    assert action(address, session, csrf, "users", "slow") == (
        200, {"done": "users answers 300 ms late"})
    assert status_of(with_ui, "users")["chaos"]["latency_ms"] == 300
    assert action(address, session, csrf, "users", "heal")[0] == 200
    assert not status_of(with_ui, "users").get("chaos")
    for part, what, words in (("ui", "stop", "not a part of this shop"),
                              ("nowhere", "kill", "not a part of this shop"),
                              ("users", "explode", "not an action")):
        status, answer = action(address, session, csrf, part, what)
        assert status == 422 and words in answer["error"], answer
    port = urlsplit(address["url"]).port
    malformed = ask(address, "POST", "/action", {
        "Cookie": session, "Origin": f"http://127.0.0.1:{port}", "x-csrf-token": csrf},
        body="kill products")
    assert malformed.status == 422
    assert action(address, session, "guessed", "products", "kill")[0] == 403
    assert status_of(with_ui, "products")["status"] == "running", "refused: nothing done"


def events(answer: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The stream's looks, as they come (comments skipped)."""
    while True:
        line = answer.readline()
        if not line:
            return
        if line.startswith(b"data: "):
            yield json.loads(line[6:])


def states(look: dict[str, Any]) -> dict[str, str]:
    return {part["name"]: part["state"] for part in look["parts"]}


def test_the_live_stream_shows_a_killed_service_down_then_up(with_ui: Sandbox) -> None:
    address = login_of(with_ui)
    session = logged_in(address)
    answer = ask(address, "GET", "/live", {"Cookie": session})
    assert answer.status == 200
    assert answer.getheader("content-type", "").startswith("text/event-stream")
    looks = events(answer)
    first = next(looks)
    assert states(first) == {name: "up" for name in
                             ("bus", "users", "products", "orders", "query")}
    assert {p["name"]: p["rows"] for p in first["parts"]}["users"] == {"users": 0}
    with_ui.run("kill", "products", check=True)
    killed = time.monotonic()
    for look in looks:
        if states(look)["products"] == "down":
            break
        assert time.monotonic() - killed < WAIT, look
    products = next(p for p in look["parts"] if p["name"] == "products")
    assert "connection refused" in products["problems"][0]
    with_ui.run("start", "products", check=True)
    for look in looks:
        if set(states(look).values()) == {"up"}:
            break
        assert time.monotonic() - killed < 2 * WAIT, look
    answer.close()


def test_up_with_the_dashboard_ends_with_its_login(tmp_path: Path) -> None:
    """`msshop up --detach --ui`: the person who asked for the dashboard hears where it is
    (its --json, for scripts, says where everything runs and no token)."""
    with running_sandbox(tmp_path / "sandbox") as sandbox:
        sandbox.run("down", check=True)
        said = sandbox.run("up", "--detach", "--ui", env_extra={"COLUMNS": "80"}, check=True)
        login = login_of(sandbox)["login"]
        assert login in said.stdout.splitlines() and "the dashboard of this sandbox" in \
            " ".join(said.stdout.split())
        assert max(len(line) for line in said.stdout.splitlines()) <= 80
        sandbox.run("down", check=True)
        said = sandbox.run("up", "--detach", "--ui", "--json", check=True)
        assert "token" not in said.stdout and "ui" in json.loads(said.stdout)["services"][-1][
            "name"]


def test_a_sandbox_without_its_dashboard_is_given_it_by_ui(tmp_path: Path) -> None:
    """Started without --ui, `msshop ui` adds the dashboard and prints its login (more in
    test_dashboard_start.py)."""
    with running_sandbox(tmp_path / "sandbox") as sandbox:
        said = sandbox.run("ui")
        assert said.returncode == 0, said.stderr
        ui = sandbox.state.services["ui"]
        assert said.stdout.splitlines()[0].startswith(f"{ui.url}/login?token=")
        assert ui.status == "running"


def test_ui_with_no_sandbox_running_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    said = Sandbox(tmp_path / "sandbox", sandbox_env(tmp_path / "sandbox")).run("ui")
    assert (said.returncode, said.stdout) == (1, "")
    assert said.stderr.count("\n") == 1 and "start one with: msshop up --detach" in said.stderr


RED = "document.getElementById('part-products').classList.contains('down')"


def test_in_a_browser_the_login_shows_the_shop_and_a_killed_service_turns_red(
        with_ui: Sandbox) -> None:
    """A real headless Chromium: the login address, then the page; all five parts drawn
    up; `msshop kill products` from the CLI, and products is red on the page within a
    second; started again, green; no console errors, nothing fetched from elsewhere."""
    from tests.browser import WATCH_ERRORS, Page, with_page

    address = login_of(with_ui)

    async def until(page: Page, expression: str, within: float) -> float:
        began = time.monotonic()
        while not await page.evaluate(expression):
            assert time.monotonic() - began < within, expression
            await asyncio.sleep(0.02)
        return time.monotonic() - began

    async def test(page: Page) -> None:
        await page.send("Page.enable")
        await page.send("Page.addScriptToEvaluateOnNewDocument", source=WATCH_ERRORS)
        await page.open(address["login"])  # again, now watched from the start
        assert await page.evaluate("location.pathname") == "/"
        await until(page, "window.__snapshot !== undefined", WAIT)
        drawn = await page.evaluate("[...document.querySelectorAll('.part')].map(p => "
                                    "[p.dataset.part, p.classList.contains('down')])")
        assert sorted(drawn) == [[name, False] for name in
                                 ("bus", "orders", "products", "query", "users")]
        # readable on a projector: 1280x720 with no scroll either way
        await page.send("Emulation.setDeviceMetricsOverride", width=1280, height=720,
                        deviceScaleFactor=1, mobile=False)
        assert await page.evaluate("[document.documentElement.scrollWidth, "
                                   "document.documentElement.scrollHeight]") == [1280, 720]
        # the last minutes' chart: a point a look, for the outboxes and the read model; a
        # tab opened later starts with what the dashboard kept (GET /history)
        await until(page, "window.__history >= 2", WAIT)
        await page.open(address["url"])
        await until(page, "window.__seeded >= 2", WAIT)
        await until(page, "document.getElementById('line-behind').getAttribute('points')"
                          ".split(' ').length >= 2", WAIT)
        assert await page.evaluate("document.cookie") == "", "HttpOnly: no script reads it"
        signed = json.loads((await asyncio.to_thread(
            with_ui.run, "signup", "--email", "red@example.com", "--name", "Red", "--json",
            check=True)).stdout)
        await asyncio.to_thread(with_ui.run, "wait", "--for", "caught-up", check=True)
        await asyncio.to_thread(with_ui.run, "kill", "products", check=True)
        took = await until(page, RED, WAIT)
        assert took <= 1.0, f"products turned red {took:.2f} s after the kill"
        said = await page.evaluate("document.querySelector('#part-products .line1')"
                                   ".textContent")
        assert "connection refused" in said
        # products down: the replicated answer is still given, from the read model
        asked = await page.evaluate(f"fetch('/ask?user={signed['user']['id']}"
                                    "&strategy=replicated').then(r => r.json())")
        assert asked["answers"][0]["status"] == 200, asked
        await asyncio.to_thread(with_ui.run, "start", "products", check=True)
        await until(page, f"!{RED}", WAIT)
        # a button's fault shows in `msshop status`, as the CLI's would
        await page.evaluate("document.getElementById('target').value = 'users'")
        await page.evaluate("document.querySelector('[data-action=slow]').click()")
        await until(page, "document.getElementById('done').textContent === "
                          "'users answers 300 ms late'", WAIT)
        status = await asyncio.to_thread(status_of, with_ui, "users")
        assert status["chaos"]["latency_ms"] == 300
        await page.evaluate("document.querySelector('[data-action=heal]').click()")
        await until(page, "document.getElementById('done').textContent === "
                          "\"users's faults cleared\"", WAIT)
        assert await page.evaluate("window.__errors") == []
        fetched = await page.evaluate(
            "performance.getEntriesByType('resource').map(r => r.name)"
            f".filter(n => !n.startsWith('{address['url'].rstrip('/')}'))")
        assert fetched == [], "nothing from anywhere but the dashboard"

    asyncio.run(with_page(address["login"], test))


def test_on_nats_the_bus_box_is_its_nodes(tmp_path: Path) -> None:
    """On a nats bus the bus is nats-server nodes, which answer no msshop /health: the
    dashboard asks each node's monitoring port, and one killed is down in the next look."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_UI="1",
                         MSSHOP_BUS_BACKEND="nats") as sandbox:
        address = login_of(sandbox)
        session = logged_in(address)

        def look() -> dict[str, dict[str, Any]]:
            answer = ask(address, "GET", "/state", {"Cookie": session})
            return {p["name"]: p for p in json.loads(answer.read())["parts"]}

        parts = look()
        assert parts["bus"]["kind"] == "nats-server" and parts["bus"]["state"] == "up"
        sandbox.run("kill", "bus", check=True)
        deadline = time.monotonic() + WAIT
        while (bus := look()["bus"])["state"] != "down":
            assert time.monotonic() < deadline, bus
            time.sleep(0.2)
        assert "connection refused" in bus["problems"][0]
        sandbox.run("start", "bus", check=True)
