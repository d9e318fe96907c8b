"""Issue 28: `msshop ui` on a running sandbox started without its dashboard adds it (the
supervisor's `add`: its port reserved, its state written, forked, healthy), then prints its
login as for one started with `up --ui`; from then on the dashboard is a part like the
others (status, logs, stop, start, restart, reset, down), and a stopped one is started
again by `msshop ui`. All of it against a real sandbox, over real sockets."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from msshop.contracts import events
from msshop.runtime import control_client
from tests.conftest import Sandbox, running_sandbox
from tests.e2e.test_dashboard import ask, logged_in, login_of, login_path
from tests.e2e.test_dashboard_events import Dashboard, seen, signed_up, until

GONE_WITHIN = 10.0  # seconds a stopped process has to be gone (it stops in far less)


@pytest.fixture(scope="module")
def without_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox up with no dashboard (no --ui, no MSSHOP_UI)."""
    root = tmp_path_factory.mktemp("no-ui") / "sandbox"
    with running_sandbox(root) as sandbox:
        assert "ui" not in sandbox.state.services
        yield sandbox


def ui_status(sandbox: Sandbox) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in sandbox.status()["services"] if s["name"] == "ui")
    return found


def assert_gone(pid: int) -> None:
    """`pid` ends within GONE_WITHIN seconds (polled: os.kill(pid, 0) is refused)."""
    deadline = time.monotonic() + GONE_WITHIN
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"pid {pid} still runs"
        time.sleep(0.02)


def base_with_the_dashboards_port_taken() -> tuple[int, socket.socket]:
    """A base port whose services' ports (base + 0 … 4) are free, and a socket listening
    on the dashboard's (base + 8). Below 32768: no port there is handed out as the
    ephemeral end of a connection, so only a server could take one meanwhile."""
    for _ in range(50):
        base = random.randrange(20_000, 32_000)
        taken = socket.socket()
        try:
            taken.bind(("127.0.0.1", base + 8))
            for offset in range(5):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
        except OSError:
            taken.close()
            continue
        taken.listen()
        return base, taken
    raise AssertionError("found no free range of ports")


def test_ui_adds_the_dashboard_and_its_login_works(without_ui: Sandbox) -> None:
    address = login_of(without_ui)  # `msshop ui --json`, exit 0
    assert address["url"].startswith("http://127.0.0.1:")  # loopback only, as at up --ui
    session = logged_in(address)  # GET /login?token=… → 303 and a cookie
    assert session.startswith(f"msshop-ui-{urlsplit(address['url']).port}=")
    assert ask(address, "GET", "/state", {"Cookie": session}).status == 200
    ui = ui_status(without_ui)
    assert (ui["status"], ui["health"], ui["pid"]) == ("running", "ok", address["pid"])
    assert without_ui.state.services["ui"].status == "running"  # in state.json, as others

    again = login_of(without_ui)  # already there: nothing to do, the same process
    assert (again["pid"], again["login"]) == (address["pid"], address["login"])
    said = without_ui.run("ui")
    assert said.returncode == 0 and said.stdout.splitlines()[0] == address["login"]


def test_a_stopped_dashboard_is_started_again_by_ui(without_ui: Sandbox) -> None:
    before = login_of(without_ui)
    without_ui.run("stop", "ui", check=True)
    assert_gone(before["pid"])
    assert ui_status(without_ui)["status"] == "stopped"

    after = login_of(without_ui)
    assert after["pid"] != before["pid"] and after["login"] != before["login"]
    assert ask(after, "GET", login_path(before)).status == 403  # the old token is worth nothing
    assert ask(after, "GET", "/state", {"Cookie": logged_in(after)}).status == 200
    assert ui_status(without_ui)["status"] == "running"


def test_two_uis_at_once_start_one_dashboard(without_ui: Sandbox) -> None:
    """The second's `start` finds it started by the first (refused as already running):
    both print the one dashboard's login."""
    login_of(without_ui)
    without_ui.run("stop", "ui", check=True)
    with without_ui.background("ui", "--json") as first, \
            without_ui.background("ui", "--json") as second:
        said = [process.communicate(timeout=60) for process in (first, second)]
        assert (first.returncode, second.returncode) == (0, 0), said
    pids = {json.loads(out)["pid"] for out, _ in said}
    assert pids == {ui_status(without_ui)["pid"]}


def test_the_added_dashboard_is_a_part_like_the_others(without_ui: Sandbox) -> None:
    first = login_of(without_ui)
    logs = without_ui.run("logs", "ui")
    assert logs.returncode == 0, logs.stderr
    assert " ui INFO ui serving on 127.0.0.1:" in logs.stdout
    without_ui.run("restart", "ui", check=True)
    restarted = login_of(without_ui)
    assert restarted["pid"] != first["pid"]
    state = without_ui.state  # reset, as `msshop seed --reset` asks it
    control_client.call(state.control_port, state.token, "reset", timeout=60)
    after_reset = ui_status(without_ui)
    assert after_reset["status"] == "running" and after_reset["pid"] != restarted["pid"]
    without_ui.run("kill", "ui", check=True)
    assert ui_status(without_ui)["status"] == "crashed"
    revived = login_of(without_ui)  # crashed: started again
    assert revived["pid"] != after_reset["pid"] and ui_status(without_ui)["health"] == "ok"


def test_on_a_nats_bus_the_added_dashboards_feed_signs_in_and_follows(
        tmp_path: Path) -> None:
    """The nodes were started with no user for the dashboard: added, each node's config
    gains its read-only user and is reloaded (no restart), and the feed follows the bus."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND="nats",
                         MSSHOP_BUS_NODES="3") as sandbox:
        nodes = {name: s.pid for name, s in sandbox.state.services.items()
                 if s.kind == "nats-server"}
        assert len(nodes) == 3
        dashboard = Dashboard(sandbox)  # `msshop ui --json`, logged in
        with dashboard.watching():  # the feed following the bus: it signed in
            user = signed_up(dashboard, "watcher@example.com")
            event = until(lambda: seen(dashboard, events.USER_SIGNED_UP, user))
        assert event["source"] == "users"
        assert dashboard.health()["feed"]["problem"] is None
        assert {name: s.pid for name, s in sandbox.state.services.items()
                if s.kind == "nats-server"} == nodes, "the nodes were not restarted"


def test_down_stops_the_added_dashboard(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sandbox") as sandbox:
        pid = login_of(sandbox)["pid"]
        down = sandbox.run("down")
        assert down.returncode == 0, down.stderr
        assert_gone(pid)


def test_a_taken_port_is_one_line_naming_the_fix_and_nothing_is_added(
        tmp_path: Path) -> None:
    """With a base port, the dashboard's is base + 8: held by another program, `msshop ui`
    says so in one line and adds nothing; freed, the next `msshop ui` adds it there."""
    with contextlib.ExitStack() as stack:
        base, taken = base_with_the_dashboards_port_taken()
        stack.callback(taken.close)
        port = base + 8
        sandbox = stack.enter_context(
            running_sandbox(tmp_path / "sandbox", MSSHOP_BASE_PORT=str(base)))
        said = sandbox.run("ui")
        assert said.returncode == 1 and said.stdout == ""
        assert said.stderr.count("\n") == 1, said.stderr
        assert f"port {port} for ui is taken by another program; free it" in said.stderr
        assert "ui" not in sandbox.state.services
        taken.close()
        address = login_of(sandbox)
        assert urlsplit(address["url"]).port == port
        assert ask(address, "GET", "/state", {"Cookie": logged_in(address)}).status == 200
