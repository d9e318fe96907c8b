"""Render into a captured Console and compare the text."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from rich.console import Console

from msshop import render
from msshop.contracts.shop import OrderStatus
from msshop.contracts.status import Health, StatusReport
from msshop.runtime.orchestrator.state import ServiceState, State


def captured() -> Console:
    return Console(width=100, record=True, color_system=None, force_terminal=False)


def example_state() -> State:
    return State(
        sandbox="/tmp/sb", host="127.0.0.1", supervisor_pid=10, control_port=1, token="t",
        mode="detached", started_at=0.0,
        services={"users": ServiceState("users", 7101, "http://127.0.0.1:7101",
                                        "/tmp/sb/data/users.db", "/tmp/sb/logs/users.log",
                                        status="running", pid=11)},
    )


def test_ready_lists_each_service_with_url_pid_and_database() -> None:
    out = captured()
    render.ready(out, example_state(), 0.25)
    assert out.export_text() == (
        "sandbox /tmp/sb is up in 250 ms (supervisor pid 10, detached)\n"
        "  users     http://127.0.0.1:7101   pid 11      data/users.db\n")


def test_status_shows_rows_replication_and_a_crash() -> None:
    out = captured()
    render.status(out, cast(StatusReport, {  # only what the renderer reads
        "sandbox": "/tmp/sb", "mode": "detached", "supervisor": {"pid": 10},
        "services": [
            {"name": "bus", "status": "running", "pid": 9, "port": 7100, "health": "ok",
             "rows": {"events": 1300}, "db": "/tmp/sb/data/bus.db", "exit": None,
             "head": 1300},
            {"name": "users", "status": "running", "pid": 11, "port": 7101, "health": "ok",
             "rows": {"users": 1200}, "db": "/tmp/sb/data/users.db", "exit": None,
             "outbox": {"pending": 3, "error": "bus is down: connection refused"}},
            {"name": "products", "status": "crashed", "pid": None, "port": 7102,
             "health": "-", "rows": None, "db": "/tmp/sb/data/products.db",
             "exit": "killed by SIGKILL"},
            {"name": "query", "status": "running", "pid": 12, "port": 7104, "health": "ok",
             "rows": {"users_replica": 1200}, "db": "/tmp/sb/data/query.db", "exit": None,
             "consumer": {"position": 1290, "bus_head": 1300, "behind": 10,
                          "caught_up": False, "dead_letters": 1, "bus_error": None}},
        ]}))
    lines = [line.rstrip() for line in out.export_text().splitlines()]
    assert lines == [
        "sandbox /tmp/sb (detached, supervisor pid 10)",
        "service   status   pid  port  health  database          rows",
        "bus       running  9    7100  ok      data/bus.db       events 1,300",
        "users     running  11   7101  ok      data/users.db     users 1,200",
        "products  crashed  -    7102  -       data/products.db  -",
        "query     running  12   7104  ok      data/query.db     users 1,200",
        "outbox backlog: users 3",
        "  the users relay is retrying: bus is down: connection refused",
        "bus: head at position 1,300",
        "query: read model at position 1,290 of 1,300 (10 behind), 1 dead letter(s)",
        "products crashed: killed by SIGKILL; start it with: msshop start products",
    ]


def test_order_line() -> None:
    out = captured()
    render.order(out, {"id": 5, "user_id": 1, "product_id": 2, "quantity": 3,
                       "unit_price": 19.5, "total": 58.5, "request_id": None,
                       "created_at": 0.0, "status": OrderStatus.CONFIRMED, "reason": None},
                 created=True)
    assert out.export_text() == (
        "order 5 placed: user 1 bought 3 x product 2 at 19.50 = 58.50\n")


def test_demo_step_shows_each_command_line_with_a_prompt() -> None:
    out = captured()
    render.DemoStage(out).step("Start the shop.", "export A=1\nmsshop up --detach")
    assert out.export_text() == "\nStart the shop.\n$ export A=1\n$ msshop up --detach\n"


def test_freshness_says_when_the_bus_cannot_be_reached() -> None:
    text = render.freshness({"position": 130, "bus_head": 130, "behind": 0, "caught_up": False,
                             "listening": False, "head_seen_ms_ago": 3721.0,
                             "bus_error": "bus is down", "catching_up_to": None,
                             "last_applied_ms_ago": None, "log_problem": None})
    assert text == ("read model at bus position 130; the bus is unreachable (bus is down), its "
                    "head was 130 when last seen, 3,721 ms ago: newer writes may be missing")


def replica(**changes: object) -> dict[str, object]:
    fresh: dict[str, object] = {"position": 100, "bus_head": 100, "behind": 0,
                                "caught_up": True, "catching_up_to": None, "listening": True,
                                "head_seen_ms_ago": 5.0, "last_applied_ms_ago": 5.0,
                                "bus_error": None, "applied": 100, "dead_letters": 0}
    return {**fresh, **changes}


def test_start_says_what_a_catching_up_query_service_can_do() -> None:
    out = captured()
    health = cast(Health, {"service": "query", "consumer": replica(
        position=12_000, catching_up_to=40_000, caught_up=False, behind=28_000)})
    render.start_note(out, "query", 12.0, health)
    assert out.export_text() == (
        "query started, healthy in 12 ms; it answers direct-call; replicated reads wait until "
        "it has caught\n  up (12,000 of 40,000 applied)\n"), "wrapped at the width, indented"
    out = captured()
    render.start_note(out, "users", 9.0, cast(Health, {"service": "users"}),
                           restarted=True)
    assert out.export_text() == "users restarted, healthy in 9 ms\n"


def test_status_does_not_call_the_shop_caught_up_while_events_wait_in_outboxes() -> None:
    report = cast(StatusReport, {"services": [
        {"name": "orders", "status": "running", "exit": None,
         "outbox": {"pending": 664, "last_position": 90, "error": None,
                    "failing_since": None}},
        {"name": "query", "status": "running", "exit": None, "consumer": replica()}]})
    assert render.replication_lines(report)[:2] == [
        "outbox backlog: orders 664",
        "query: read model at position 100 of 100 (caught up with the bus; 664 event(s) not "
        "on the bus yet), 0 dead letter(s)"]


def test_status_names_the_saga_steps_only_when_they_lag() -> None:
    keeping_up = cast(StatusReport, {"services": [
        {"name": "products", "status": "running", "exit": None, "saga": replica()},
        {"name": "query", "status": "running", "exit": None, "consumer": replica()}]})
    assert not any("saga" in line for line in render.replication_lines(keeping_up))
    lagging = cast(StatusReport, {"services": [
        {"name": "products", "status": "running", "exit": None,
         "saga": replica(position=60, behind=40, caught_up=False)},
        {"name": "users", "status": "running", "exit": None,
         "saga": replica(dead_letters=2, bus_error="bus is down: connection refused")}]})
    assert render.replication_lines(lagging) == [
        "saga steps behind the bus (events): products 40",
        "saga steps dead-lettered (their orders stay pending): users 2",
        "  the users saga steps are retrying: bus is down: connection refused"]


def test_every_renderer_the_cli_may_ask_for_is_found_and_typed() -> None:
    """render/__init__ imports a topic's module only when one of its names is first asked
    for; _TOPICS (where each name lives) and the imports that type them must agree."""
    import ast
    import importlib

    package = importlib.import_module("msshop.render")
    source = Path(package.__file__ or "").read_text()
    typed = {alias.asname or alias.name for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.ImportFrom) and node.module != "__future__"
             for alias in node.names} - {"TYPE_CHECKING", "Any"}
    assert typed == set(package.__all__)
    # importing msshop.render.traces sets the package's attribute `traces` to the module:
    # a renderer of the same name would be shadowed by it
    topics = {path.stem for path in Path(package.__file__ or "").parent.glob("*.py")}
    assert not set(package.__all__) & topics
    for name in package.__all__:
        assert callable(getattr(package, name)), name


def test_a_narrow_status_drops_the_least_useful_columns_and_keeps_the_rest_whole() -> None:
    status = cast(StatusReport, {
        "sandbox": "/tmp/sb", "mode": "detached", "supervisor": {"pid": 10},
        "services": [
            {"name": "query", "status": "running", "pid": 123456, "port": 47104,
             "health": "ok", "db": "/tmp/sb/data/query.db", "exit": None,
             "rows": {"users_replica": 2000, "products_replica": 200,
                      "orders_replica": 100_000}}]})

    def shown(width: int) -> list[str]:
        out = render.terminal()
        out.width = width
        with out.capture() as captured_text:
            out.print(render.status_table(out, status))
        return captured_text.get().splitlines()

    wide = shown(100)
    assert wide[1].split() == ["service", "status", "pid", "port", "health", "database", "rows"]
    assert [line.split() for line in wide[2:]] == [
        ["query", "running", "123456", "47104", "ok", "data/query.db", "users", "2,000"],
        ["products", "200"], ["orders", "100,000"]], "a read model's tables one a line"
    narrow = shown(58)
    assert narrow[1].split() == ["service", "status", "pid", "database", "rows"], \
        "health, then port, went first"
    assert "123456" in narrow[2] and "…" not in "".join(narrow), "what stays is whole"
    assert all(len(line) <= 58 and line == line.rstrip() for line in narrow)
    tiny = shown(36)  # the title wraps; the table keeps what matters most
    assert next(line for line in tiny if line.startswith("service")).split() == [
        "service", "status", "rows"]


def test_control_bidirectional_and_zero_width_characters_are_escaped() -> None:
    from msshop.render.console import clean

    marks = [*range(0x202A, 0x202F), *range(0x2066, 0x206A), *range(0x200B, 0x2010),
             0xFEFF, 0x2028, 0x2029, 0x061C, 0x1B, 0x07, 0x7F, 0x85, 0x9B]
    for code in marks:
        shown = clean(f"a{chr(code)}b")
        assert chr(code) not in shown and shown.startswith("a\\") and shown.endswith("b"), code
    assert clean("\u202eexe.txt") == "\\u202eexe.txt"
    assert clean("tab\tstays, é and 日本 stay") == "tab\tstays, é and 日本 stay"


def test_a_trespass_a_program_of_your_own_was_refused_reads_in_80_columns() -> None:
    """The operating system's refusal, as `msshop trespass query --into users` shows it
    where the kernel holds the rule (the e2e test sees it only where Landlock is)."""
    out = Console(width=80, record=True, color_system=None, force_terminal=False)
    render.trespass_refusal(out, {
        "service": "query", "into": "users", "tried": "/tmp/sb/data/users/users.db",
        "refused": "PermissionError: [Errno 13] Permission denied: "
                   "'/tmp/sb/data/users/users.db'", "held": True, "how": "open"})
    text = out.export_text()
    assert text.splitlines()[:2] == [
        "query tried to open users.db, the users service's file;",
        "the operating system refused (open):"]
    assert "Permission denied" in text and "nothing was opened" in text
    assert all(len(line) <= 80 for line in text.splitlines())
    assert render.trespass_broken({"service": "query", "into": "users", "tried": "/x",
                                   "refused": "", "held": False, "how": "open"}) == (
        "query opened and read users's file (open): nothing refused it, the isolation "
        "rule did not hold")
