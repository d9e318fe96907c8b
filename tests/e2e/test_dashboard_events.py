"""Issue 28, "Watch it": the dashboard's feed of the bus's events, read with a read-only
identity of its own, on the sandbox's log and on a real nats-server alike.

Each claim tried against real processes: an event in the page's looks within a second of a
purchase; the dashboard's identity refused an append (log: 403), an event subject and the
stream's deletion (nats); the filters and their one-line refusals; nobody watching, no
reads (and on nats no connection of the dashboard's at the server); the bus stopped, the
feed says so, and follows again once it is started; a poison event in the dead letters."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from msshop.contracts import events
from msshop.contracts.credentials import bearer, service_credential
from tests.conftest import BACKENDS, Sandbox, running_sandbox
from tests.e2e.test_broker import nats_server  # noqa: F401  (the fixture: a server of our own)
from tests.e2e.test_dashboard import ask, logged_in, login_of

WAIT = 10.0  # seconds a test waits for a condition that takes far less


@pytest.fixture(scope="module", params=BACKENDS)
def with_ui(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp(f"ui-events-{request.param}") / "sandbox"
    with running_sandbox(root, MSSHOP_UI="1", MSSHOP_BUS_BACKEND=request.param) as sandbox:
        yield sandbox


class Dashboard:
    """The sandbox's dashboard, logged in."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.address = login_of(sandbox)
        self.session = logged_in(self.address)

    def get(self, path: str, session: bool = True) -> tuple[int, Any]:
        answer = ask(self.address, "GET", path, {"Cookie": self.session} if session else {})
        return answer.status, json.loads(answer.read())

    def state(self) -> dict[str, Any]:
        status, look = self.get("/state")
        assert status == 200, look
        found: dict[str, Any] = look
        return found

    def health(self) -> dict[str, Any]:
        status, health = self.get("/health", session=False)
        assert status == 200
        found: dict[str, Any] = health
        return found

    @contextmanager
    def watching(self) -> Iterator[None]:
        """A tab open on the live stream (read as it comes, as a browser's would be), with
        the feed following the bus from its head, until the block ends."""
        answer = ask(self.address, "GET", "/live", {"Cookie": self.session})
        assert answer.status == 200
        closed = threading.Event()

        def read() -> None:
            try:
                while not closed.is_set() and answer.readline():
                    pass
            except (OSError, AttributeError, ValueError):
                pass  # closed by the test under the read

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            until(lambda: self.health()["feed"]["state"] in ("following", "waiting"))
            yield
        finally:
            closed.set()
            answer.close()


def until(condition: Callable[[], Any], within: float = WAIT, every: float = 0.02) -> Any:
    """Poll `condition` until it holds (its value), failing at the deadline."""
    deadline = time.monotonic() + within
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not within {within} s"
        time.sleep(every)
    return value


def signed_up(dashboard: Dashboard, email: str) -> int:
    """A user made (an event of users'); its id."""
    client = dashboard.sandbox.client()
    user: dict[str, Any] = client.request("users", "POST", "/users",
                                          {"email": email, "name": "Watcher"})
    return int(user["id"])


def seen(dashboard: Dashboard, event_type: str, aggregate_id: int) -> dict[str, Any] | None:
    return next((e for e in dashboard.state()["events"]
                 if e["type"] == event_type and e["aggregate_id"] == aggregate_id), None)


def test_an_event_is_on_the_page_within_a_second_of_a_purchase(with_ui: Sandbox) -> None:
    dashboard = Dashboard(with_ui)
    client = with_ui.client()
    owner = bearer(with_ui.state.token)
    with dashboard.watching():
        user = signed_up(dashboard, "buyer@example.com")
        product = client.request("products", "POST", "/products",
                                 {"title": "Hat", "price": 1.0, "stock": 100})["id"]
        client.request("users", "POST", "/users/credit",
                       {"users": [{"id": user, "amount": 100.0}]}, owner)
        began = time.monotonic()
        order = client.request("orders", "POST", "/orders",
                               {"user_id": user, "product_id": product})["id"]
        event = until(lambda: seen(dashboard, events.ORDER_PLACED, order), every=0.01)
        took = time.monotonic() - began
        assert took <= 1.0, f"the purchase's event was on the page {took:.2f} s after it"
    assert event["source"] == "orders" and event["position"] > 0
    assert f"user_id={user}" in event["summary"] and len(event["summary"]) <= 120
    look = dashboard.state()
    assert look["events_problem"] is None and look["events_head"] >= event["position"]


def test_the_dashboards_identity_reads_the_bus_and_may_not_write(with_ui: Sandbox) -> None:
    token = with_ui.state.token
    credential = service_credential(token, "ui")
    if with_ui.backend == "log":
        bus = with_ui.state.services["bus"].url
        head = with_ui.client().bus_head()
        with urllib.request.urlopen(urllib.request.Request(  # reads: yes
                f"{bus}/events?after=0&limit=1", headers=bearer(credential))) as answer:
            assert json.loads(answer.read())["head"] >= head
        event = events.encode(events.make(events.USER_SIGNED_UP, "users", 4545, 1, {
            "id": 4545, "email": "u@example.com", "name": "U"}, None))
        appended = urllib.request.Request(f"{bus}/events", data=b"[" + event + b"]",
                                          headers={**bearer(credential),
                                                   "content-type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(appended)
        error = json.loads(refused.value.read())
        assert refused.value.code == 403 and set(error) == {"error", "status", "service"}
        assert error["error"] == ("ui reads the bus; only services that record events "
                                  "append to it")
        assert with_ui.client().bus_head() == head, "nothing was appended"
        return
    words = asyncio.run(nats_as_ui(with_ui))
    assert words["read"] >= 0, "the ui user may describe the stream (and read it)"
    mine = f"msshop.{with_ui.state.bus.sandbox}.users.UserSignedUp"
    assert f'permissions violation for publish to "{mine.lower()}"' in words["publish"]
    stream = with_ui.state.bus.stream.lower()
    assert f'permissions violation for publish to "$js.api.stream.delete.{stream}"' in \
        words["delete"]
    assert words["after"] == words["read"], "nothing was appended, the stream is there"


async def nats_as_ui(sandbox: Sandbox) -> dict[str, Any]:
    """Sign in to the sandbox's nats-server as `ui`, with nats-py: describe the stream,
    publish an event subject, delete the stream; what the server said to each."""
    import nats
    from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

    address = sandbox.state.bus.address("ui", sandbox.state.token)
    problems: list[str] = []

    async def error(exc: Exception) -> None:
        problems.append(str(exc).lower())

    nc = await nats.connect(list(address.servers), user=address.user,
                            password=address.password, inbox_prefix=address.inbox.encode(),
                            error_cb=error, allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=1.0)
        said: dict[str, Any] = {"read": (await js.stream_info(address.stream)).state.last_seq}
        event = events.encode(events.make(events.USER_SIGNED_UP, "users", 4646, 1, {
            "id": 4646, "email": "n@example.com", "name": "N"}, None))
        await nc.publish(f"msshop.{address.sandbox}.users.UserSignedUp", event)
        await nc.flush()
        deadline = time.monotonic() + WAIT
        while not problems:  # the server's refusal comes as an error of the connection
            assert time.monotonic() < deadline, "the ui user published an event"
            await asyncio.sleep(0.02)
        said["publish"] = problems.pop(0)
        try:
            await js.delete_stream(address.stream)
            said["delete"] = "deleted"
        except (NoRespondersError, NatsTimeout):
            said["delete"] = problems.pop(0) if problems else "no answer"
        said["after"] = (await js.stream_info(address.stream)).state.last_seq
        return said
    finally:
        await nc.close()


def test_the_filters_and_their_refusals(with_ui: Sandbox) -> None:
    dashboard = Dashboard(with_ui)
    client = with_ui.client()
    with dashboard.watching():
        user = signed_up(dashboard, "filtered@example.com")
        product = client.request("products", "POST", "/products",
                                 {"title": "Scarf", "price": 2.0, "stock": 5})["id"]
        until(lambda: seen(dashboard, events.PRODUCT_CREATED, product)
              and seen(dashboard, events.USER_SIGNED_UP, user))
    status, kept = dashboard.get("/events")
    assert status == 200 and len(kept) >= 2
    assert [e["position"] for e in kept] == sorted(e["position"] for e in kept)
    status, users = dashboard.get("/events?type=UserSignedUp")
    assert status == 200 and users and {e["type"] for e in users} == {"UserSignedUp"}
    status, products = dashboard.get("/events?source=products")
    assert status == 200 and products and {e["source"] for e in products} == {"products"}
    status, both = dashboard.get("/events?type=UserSignedUp,ProductCreated&limit=1")
    assert status == 200 and len(both) == 1 and both[0] == kept[-1]
    for query, words in (("type=Nope", "no event type 'Nope'; known: "),
                         ("source=nobody", "no event source 'nobody'; known: "),
                         ("limit=0", "limit is a whole number from 1 to 200"),
                         ("limit=201", "limit is a whole number from 1 to 200"),
                         ("limit=many", "limit is a whole number from 1 to 200")):
        status, refused = dashboard.get(f"/events?{query}")
        assert status == 422 and refused["error"].startswith(words), (query, refused)
        assert "\n" not in refused["error"] and refused["service"] == "ui"
    status, refused = dashboard.get("/events?type=Nope")
    assert "OrderPlaced" in refused["error"] and "UserSignedUp" in refused["error"]
    assert dashboard.get("/events", session=False)[0] == 401


def nats_connections(sandbox: Sandbox) -> list[str]:
    """The names of the clients connected to the sandbox's nats-server (its /connz)."""
    monitor = sandbox.state.services["bus"].monitor_port
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/connz") as answer:
        return [c.get("name", "") for c in json.loads(answer.read())["connections"] or []]


def test_nobody_watching_nothing_is_read(with_ui: Sandbox) -> None:
    from msshop.instruments.checking import caught_up

    dashboard = Dashboard(with_ui)
    health = until(lambda: (h := dashboard.health())["watching"] == 0
                   and h["feed"]["state"] == "idle" and h)
    assert {t["name"]: t["state"] for t in health["tasks"]}["events"] == "running"
    reads = health["feed"]["reads"]
    if with_ui.backend == "nats":
        assert "msshop-ui" not in nats_connections(with_ui), "no reader of the dashboard's"
    signed_up(dashboard, "unwatched@example.com")
    caught_up(with_ui.client(), timeout=WAIT)  # the query service has read it by now
    dashboard.state()  # a look asked with no tab open: the services, not the bus
    health = dashboard.health()
    assert health["feed"]["reads"] == reads and health["feed"]["position"] is None
    with dashboard.watching():
        until(lambda: dashboard.health()["feed"]["reads"] > reads)
        if with_ui.backend == "nats":
            assert "msshop-ui" in nats_connections(with_ui)
    if with_ui.backend == "nats":  # the last tab gone: its reader closed, on purpose
        until(lambda: "msshop-ui" not in nats_connections(with_ui))
        log = (with_ui.root / "logs" / "ui.log").read_text()
        assert "disconnected; reconnecting" not in log, "a close of its own is no loss"


def test_the_bus_stopped_the_feed_says_so_then_follows_again(with_ui: Sandbox) -> None:
    dashboard = Dashboard(with_ui)
    with dashboard.watching():
        with_ui.run("stop", "bus", check=True)
        try:
            problem = until(lambda: dashboard.state()["events_problem"])
            assert problem.startswith("the bus cannot be read (") and "\n" not in problem
            assert dashboard.health()["feed"]["state"] == "waiting"
        finally:
            with_ui.run("start", "bus", check=True)
        until(lambda: dashboard.state()["events_problem"] is None)
        user = signed_up(dashboard, "after-the-stop@example.com")
        until(lambda: seen(dashboard, events.USER_SIGNED_UP, user))
    log = (with_ui.root / "logs" / "ui.log").read_text()
    assert "Traceback" not in log
    assert "feed of events: the bus cannot be read" in log


def test_a_poison_event_shows_in_the_dead_letters(with_ui: Sandbox) -> None:
    dashboard = Dashboard(with_ui)
    with dashboard.watching():
        said = with_ui.run("poison", "--json", check=True)
        position = json.loads(said.stdout)["position"]
        look = until(lambda: (s := dashboard.state())["dead_letter_count"] >= 1
                     and any(d["position"] == position for d in s["dead_letters"]) and s)
        letter = next(d for d in look["dead_letters"] if d["position"] == position)
        assert letter["type"] == "Poison" and letter["reason"]
        until(lambda: seen(dashboard, "Poison", 0))  # the feed shows it too, as it came
    status, poisoned = dashboard.get("/events?type=Poison")
    assert status == 200 and poisoned[-1]["position"] == position


def test_on_a_nats_server_of_your_own_the_feed_signs_in_as_every_part_does(
        tmp_path: Path, nats_server: str) -> None:  # noqa: F811
    """With `bus.url` msshop writes no permissions: every part signs in with that URL's
    user, the dashboard's feed too, and follows the stream there."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_UI="1", MSSHOP_BUS_BACKEND="nats",
                         MSSHOP_BUS_URL=nats_server) as sandbox:
        dashboard = Dashboard(sandbox)
        with dashboard.watching():
            user = signed_up(dashboard, "outside@example.com")
            event = until(lambda: seen(dashboard, events.USER_SIGNED_UP, user))
        assert event["source"] == "users" and dashboard.state()["events_problem"] is None
