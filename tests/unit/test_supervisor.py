"""The supervisor's command handling, in process, as honcho tests its Manager: with fakes.

The Supervisor is handed the real kinds of process (kind.py) built on fakes: a factory of
FakeProcess (it records its start, the signals it is sent and the waits for it, and ends
when told or on SIGTERM), a probe that answers healthy after N calls or never, an import
that only records; with a clock whose sleep only moves time on, and a printer that records
events. Nothing forks, binds or waits. The state is
built as prepare() would build it (prepare itself takes a lock, opens the control socket and
installs signal handlers, which the end-to-end tests cover); the state file is real, in
tmp_path. A third kind, all fake (FakeKind), shows a new kind needs no change to the loop.
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from msshop.contracts.config import Settings, defaults
from msshop.contracts.topology import PARTS, SERVICES, ServiceSpec
from msshop.runtime.orchestrator.bootstrap import addable, bus_state, lineup
from msshop.runtime.orchestrator.forked_service import ForkedServiceKind
from msshop.runtime.orchestrator.kind import ChildProcess, Health, ProcessKind
from msshop.runtime.orchestrator.log_files import LogFollower
from msshop.runtime.orchestrator.nats_node import NatsNodeKind
from msshop.runtime.orchestrator.ports import PortBook
from msshop.runtime.orchestrator.state import (
    BusState,
    SandboxPaths,
    ServiceState,
    State,
    read_state,
)
from msshop.runtime.orchestrator.supervisor import KILL_WAIT, Supervisor
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.landlock import Confinement

HOST = "127.0.0.1"
BASE_PORT = 7100
ALL = [spec.name for spec in SERVICES]  # bus, users, products, orders, query


class FakeClock:
    """time.monotonic and time.sleep in one: a sleep returns at once, with time moved on.
    Also the fake processes' wall clock, so that ready_ms is the time slept while waiting."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FakeSocket:
    """Stands in for a bound socket; the fake process only keeps it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def getsockname(self) -> tuple[str, int]:
        return self.host, self.port

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass


class FakeProcess:
    """A process that never runs: it records what it is asked, and ends when told."""

    def __init__(self, world: World, name: str, data: Path, log_path: Path,
                 context: ServiceContext | None = None) -> None:
        self.world, self.name, self.data, self.log_path = world, name, data, log_path
        self.context = context  # a forked service's: what it would be started with
        self.pid: int | None = None
        self.started_at: float | None = None
        self.code: int | None = None  # None while it runs
        self.probes = 0  # /health calls it was asked so far
        self.close_in_child: list[int] = []
        self.waits: list[float] = []  # the timeout of each wait for it to end
        self.found_data: bool | None = None  # whether its database file was there at start

    def start(self, sock: socket.socket, lifeline: tuple[int, int],
              close_in_child: Sequence[int]) -> None:
        self.pid = next(self.world.pids)
        self.started_at = self.world.clock.now
        self.close_in_child = list(close_in_child)
        self.found_data = self.data.exists()
        self.world.journal.append(f"start {self.name}")
        self.code = self.world.exit_on_start.get(self.name)

    def exitcode(self) -> int | None:
        return self.code

    def alive(self) -> bool:
        return self.pid is not None and self.code is None

    def terminate(self) -> None:
        self.world.journal.append(f"SIGTERM {self.name}")
        if self.alive() and self.name not in self.world.ignore_sigterm:
            self.code = -signal.SIGTERM  # uvicorn stops, then dies of the signal it caught

    def wait(self, timeout: float) -> int | None:
        self.world.journal.append(f"wait {self.name}")
        self.waits.append(timeout)
        if self.alive():  # still running: the wait lasts its whole timeout
            self.world.clock.now += timeout
        return self.code

    def kill(self) -> None:
        self.world.journal.append(f"SIGKILL {self.name}")
        if self.alive():
            self.code = -signal.SIGKILL

    def exit(self, code: int) -> None:
        """End on its own, as a crash would (-9: killed by SIGKILL)."""
        self.code = code


class World:
    """Everything outside the supervisor, faked: processes, sockets, imports, /health, time."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        # "start X", "healthy X", "SIGTERM X", "wait X", "SIGKILL X", in order
        self.journal: list[str] = []
        self.processes: dict[str, FakeProcess] = {}  # the latest one made for each service
        self.pids = itertools.count(101)
        self.exit_on_start: dict[str, int] = {}  # these end at once with this code
        self.ignore_sigterm: set[str] = set()  # these run on after SIGTERM, until SIGKILL
        self.unhealthy: dict[str, int | None] = {}  # probes answered None first; None: all
        self.binds: list[tuple[str, int, str]] = []
        self.preloaded: list[list[str]] = []
        self.by_port = {BASE_PORT + spec.port_offset: spec.name for spec in PARTS.values()}

    def new_process(self, spec: ServiceSpec, context: ServiceContext, log_path: Path,
                    log_level: str) -> FakeProcess:
        process = FakeProcess(self, spec.name, context.db_path, log_path, context)
        self.processes[spec.name] = process
        return process

    def new_node(self, name: str, config: Path, log_path: Path,
                 confinement: Confinement | None = None) -> FakeProcess:
        process = FakeProcess(self, name, config, log_path)
        self.processes[name] = process
        return process

    def kinds(self, settings: Settings) -> dict[str, ProcessKind]:
        """The real kinds of process, made of these fakes."""
        return {"service": ForkedServiceKind(settings, new_process=self.new_process,
                                             preload=self.preload, probe=self.probe),
                "nats-server": NatsNodeKind(settings, new_node=self.new_node,
                                            probe=self.probe)}

    def bind(self, host: str, port: int, service: str) -> socket.socket:
        self.binds.append((host, port, service))
        return cast(socket.socket, FakeSocket(host, port))

    def preload(self, specs: Sequence[ServiceSpec]) -> None:
        self.preloaded.append([spec.name for spec in specs])

    def probe(self, host: str, port: int, timeout: float) -> dict[str, Any] | None:
        name = self.by_port[port]
        process = self.processes.get(name)
        if process is None or not process.alive():
            return None  # connection refused
        process.probes += 1
        wanted = self.unhealthy.get(name, 0)
        if wanted is None or process.probes <= wanted:
            return None
        self.journal.append(f"healthy {name}")
        return {"status": "ok", "ready_at": self.clock.now}


class RecordingPrinter:
    """The Printer protocol, keeping (level, message) of each event."""

    refresh_interval = 0.0

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.closed = False

    def event(self, message: str, level: str = "info") -> None:
        self.events.append((level, message))

    def log_lines(self, service: str, lines: list[str]) -> None:
        raise AssertionError("log lines are only asked for when refresh_interval > 0")

    def refresh(self, state: State, health: dict[str, dict[str, Any] | None]) -> None:
        raise AssertionError("refresh is only asked for when refresh_interval > 0")

    def close(self) -> None:
        self.closed = True


def stopped_sandbox(paths: SandboxPaths) -> State:
    """The state prepare() writes: every service stopped, on base_port + its offset."""
    services = {}
    for spec in SERVICES:
        port = BASE_PORT + spec.port_offset
        services[spec.name] = ServiceState(
            name=spec.name, port=port, url=f"http://{HOST}:{port}",
            db=str(spec.db_path(paths.root)), log=str(spec.log_path(paths.root)))
    return State(sandbox=str(paths.root), host=HOST, supervisor_pid=1, control_port=7199,
                 token="t", mode="detached", started_at=0.0, services=services)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def printer() -> RecordingPrinter:
    return RecordingPrinter()


@pytest.fixture
def supervisor(tmp_path: Path, world: World, printer: RecordingPrinter) -> Iterator[Supervisor]:
    """A supervisor of a prepared sandbox whose services are all stopped."""
    settings = Settings.from_values({**defaults(), "sandbox.dir": tmp_path / "sandbox"})
    made = Supervisor(settings, printer, "detached", kinds=world.kinds(settings),
                      lineup=lineup(settings), bus=bus_state, addable=addable(),
                      bind=world.bind, clock=world.clock.monotonic, sleep=world.clock.sleep)
    made.paths.create()
    made.state = stopped_sandbox(made.paths)
    try:
        yield made
    finally:
        made.close()  # stops the fakes still running and closes the supervisor's pipes


@pytest.fixture
def running(supervisor: Supervisor, world: World, printer: RecordingPrinter) -> Supervisor:
    """The same, after start_all(), with the record of that start forgotten."""
    supervisor.start_all()
    world.journal.clear()
    world.clock.slept.clear()
    world.binds.clear()
    world.preloaded.clear()
    printer.events.clear()
    return supervisor


def on_disk(supervisor: Supervisor, name: str) -> ServiceState:
    """The service as the state file says, which is what every other command reads."""
    state = read_state(supervisor.paths)
    assert state is not None
    return state.services[name]


def test_ping_answers_ok(supervisor: Supervisor) -> None:
    assert supervisor.handle({"op": "ping"}) == {"ok": True}


def test_start_forks_a_stopped_service_and_answers_once_it_is_healthy(
        supervisor: Supervisor, world: World, printer: RecordingPrinter) -> None:
    world.unhealthy["users"] = 2

    answer = supervisor.handle({"op": "start", "service": "users"})

    assert answer == {"ok": True, "ready_ms": pytest.approx(6.0)}  # slept 2 + 4 ms
    assert world.journal == ["start users", "healthy users"]
    assert world.clock.slept == [0.002, 0.004]
    assert world.binds == [(HOST, 7101, "users")]  # its own port again
    assert world.preloaded == [["users"]]
    process = world.processes["users"]
    assert process.context is not None
    assert process.context.name == "users"
    assert process.context.db_path == supervisor.paths.data / "users" / "users.db"
    assert process.context.peer_urls == {
        name: f"http://{HOST}:{BASE_PORT + offset}"
        for offset, name in enumerate(ALL) if name != "users"}
    assert set(supervisor.wakeup) <= set(process.close_in_child)
    assert supervisor.lifeline[0] not in process.close_in_child  # the child reads its EOF
    saved = on_disk(supervisor, "users")
    assert (saved.status, saved.pid, saved.exit) == ("running", process.pid, None)
    assert saved.ready_ms == pytest.approx(6.0)
    assert printer.events == [
        ("info", f"users ready on http://{HOST}:7101 (pid {process.pid}) in 6 ms")]


def test_start_of_a_running_service_is_refused_naming_its_pid(
        running: Supervisor, world: World) -> None:
    pid = world.processes["users"].pid

    answer = running.handle({"op": "start", "service": "users"})

    assert answer == {"ok": False, "error": f"users is already running (pid {pid})"}
    assert world.journal == []


def test_stop_stops_a_running_service(running: Supervisor, world: World,
                                      printer: RecordingPrinter) -> None:
    answer = running.handle({"op": "stop", "service": "users"})

    assert answer == {"ok": True}
    assert world.journal == ["SIGTERM users", "wait users"]
    assert world.processes["users"].waits == [running.settings.stop_timeout]
    assert (on_disk(running, "users").status, on_disk(running, "users").pid) == ("stopped", None)
    assert on_disk(running, "orders").status == "running"
    assert printer.events == [("info", "users stopped")]


def test_stop_of_a_service_not_running_is_refused_naming_the_fix(
        supervisor: Supervisor, world: World) -> None:
    answer = supervisor.handle({"op": "stop", "service": "users"})

    assert answer == {"ok": False,
                      "error": "users is not running (stopped); start it with: msshop start users"}
    assert world.journal == []


def test_restart_stops_then_starts_a_new_process(running: Supervisor, world: World) -> None:
    old = world.processes["users"]

    answer = running.handle({"op": "restart", "service": "users"})

    assert answer == {"ok": True, "ready_ms": 0.0}
    assert world.journal == ["SIGTERM users", "wait users", "start users", "healthy users"]
    new = world.processes["users"]
    assert new is not old and new.pid != old.pid and not old.alive()
    assert (on_disk(running, "users").status, on_disk(running, "users").pid) == \
        ("running", new.pid)


def test_restart_of_a_stopped_service_starts_it(supervisor: Supervisor, world: World) -> None:
    assert supervisor.handle({"op": "restart", "service": "users"})["ok"] is True
    assert world.journal == ["start users", "healthy users"]


@pytest.mark.parametrize(("request_", "error"), [
    ({"op": "stop", "service": "payments"},
     "unknown service 'payments'; choose one of: bus, users, products, orders, query"),
    ({"op": "start"}, "unknown service None; choose one of: bus, users, products, orders, query"),
    ({"op": "dance", "service": "users"}, "unknown command 'dance'"),
])
def test_unknown_service_or_command_is_a_one_line_error(
        supervisor: Supervisor, world: World, request_: dict[str, Any], error: str) -> None:
    assert supervisor.handle(request_) == {"ok": False, "error": error}
    assert world.journal == []


def test_a_service_that_exits_while_starting_failed_and_its_log_says_why(
        supervisor: Supervisor, world: World) -> None:
    world.exit_on_start["users"] = 3
    (supervisor.paths.logs / "users.log").write_text(
        "10:00:00.000 users INFO starting on port 7101\n"
        "10:00:00.004 users ERROR cannot open data/users.db: database is locked\n"
        "10:00:00.005 users INFO shutting down\n")

    answer = supervisor.handle({"op": "start", "service": "users"})

    assert answer == {"ok": False, "error": (
        "users failed to start (exited with code 3): 10:00:00.004 users ERROR cannot open "
        "data/users.db: database is locked; see: msshop logs users")}
    saved = on_disk(supervisor, "users")
    assert (saved.status, saved.pid, saved.exit) == ("failed", None, "exited with code 3")
    assert world.clock.slept == []  # seen at once, not after the deadline
    supervisor._reap()
    assert on_disk(supervisor, "users").status == "failed", "not reported again as crashed"
    world.exit_on_start.clear()
    assert supervisor.handle({"op": "start", "service": "users"})["ok"] is True, \
        "a failed start can be tried again, not refused as already running"


def test_a_service_never_healthy_fails_at_the_startup_deadline(
        supervisor: Supervisor, world: World) -> None:
    world.unhealthy["users"] = None
    began = world.clock.now

    answer = supervisor.handle({"op": "start", "service": "users"})

    assert answer == {"ok": False, "error": (
        "users did not become healthy within 10 s; see: msshop logs users")}
    assert supervisor.settings.startup_timeout == 10.0
    waited = world.clock.now - began
    assert 10.0 < waited <= 10.0 + 0.02
    assert max(world.clock.slept) == 0.02  # the pause doubles from 2 ms, up to 20 ms
    assert world.processes["users"].probes == len(world.clock.slept) + 1
    assert world.journal[-2:] == ["SIGTERM users", "wait users"], \
        "the half-started child is not left running"
    saved = on_disk(supervisor, "users")
    assert (saved.status, saved.pid, saved.exit) == ("failed", None, "not healthy within 10 s")
    assert supervisor.handle({"op": "start", "service": "users"})["error"] != \
        "users is already running (pid 101)", "it can be started again"


def test_a_stop_signal_while_starting_interrupts_the_wait(
        supervisor: Supervisor, world: World) -> None:
    world.unhealthy["users"] = None

    def signalled(seconds: float) -> None:  # as SIGTERM's handler would, mid-wait
        supervisor.stopping = True

    supervisor.sleep = signalled

    answer = supervisor.handle({"op": "start", "service": "users"})

    assert answer == {"ok": False,
                      "error": "interrupted while starting; everything started was stopped"}
    assert world.processes["users"].probes == 2


def test_start_all_starts_stage_by_stage_each_healthy_before_the_next(
        supervisor: Supervisor, world: World) -> None:
    world.unhealthy["bus"] = 3

    supervisor.start_all()

    assert world.journal == [
        "start bus", "healthy bus",
        "start users", "start products", "start orders",
        "healthy users", "healthy products", "healthy orders",
        "start query", "healthy query"]
    # each fork imports its own service; the next stage is imported while this one starts
    assert world.preloaded == [["bus"], ["users", "products", "orders"],
                               ["users"], ["products"], ["orders"], ["query"], ["query"]]
    assert {name: on_disk(supervisor, name).status for name in ALL} == \
        dict.fromkeys(ALL, "running")


def test_reset_stops_all_deletes_the_data_and_starts_all(
        running: Supervisor, world: World, printer: RecordingPrinter) -> None:
    data = running.paths.data
    for name in ALL:
        (data / name).mkdir()
        for suffix in ("", "-wal", "-shm"):
            (data / name / f"{name}.db{suffix}").write_text("rows")
    log = running.paths.logs / "users.log"
    log.write_text("kept\n")
    old = dict(world.processes)

    answer = running.handle({"op": "reset"})

    assert answer == {"ok": True}
    assert world.journal == [
        "SIGTERM query", "wait query",
        "SIGTERM users", "SIGTERM products", "SIGTERM orders",
        "wait users", "wait products", "wait orders",
        "SIGTERM bus", "wait bus",
        "start bus", "healthy bus",
        "start users", "start products", "start orders",
        "healthy users", "healthy products", "healthy orders",
        "start query", "healthy query"]
    assert list(data.iterdir()) == []
    assert log.read_text() == "kept\n"
    assert all(world.processes[name].found_data is False for name in ALL)
    assert all(world.processes[name] is not old[name] for name in ALL)
    assert printer.events[-1] == ("info", "reset: every service's data was deleted")


def test_add_gives_a_running_sandbox_its_dashboard_once_as_a_part_like_the_others(
        running: Supervisor, world: World, printer: RecordingPrinter) -> None:
    """`msshop ui` on a sandbox started without --ui: the dashboard is reserved, written,
    forked and healthy as at `up --ui`; asked again, nothing is done."""
    assert "ui" not in running._state().services
    running.kinds = {**running.kinds, "executable": FakeKind(world, running.paths)}

    answer = running.handle({"op": "add", "service": "ui"})

    assert answer == {"ok": True, "added": True, "ready_ms": 0.0}
    assert world.binds == [("127.0.0.1", BASE_PORT + 8, "ui")]  # loopback only, its port
    assert world.journal == ["joined", "start ui", "healthy ui"], "each kind told first"
    process = world.processes["ui"]
    saved = on_disk(running, "ui")
    assert (saved.status, saved.pid, saved.kind) == ("running", process.pid, "service")
    assert saved.url == f"http://127.0.0.1:{BASE_PORT + 8}"
    assert process.context is not None  # as at `up --ui`: the owner's powers, its own dir
    assert process.context.owner == "t" and process.context.control_port == 7199
    assert process.context.db_path == running.paths.data / "ui" / "ui.db"
    assert set(process.context.peer_urls) == set(ALL)
    assert printer.events == [
        ("info", "ui added to the running sandbox"),
        ("info", f"ui ready on http://127.0.0.1:{BASE_PORT + 8} (pid {process.pid}) in 0 ms")]

    world.journal.clear()
    world.binds.clear()
    assert running.handle({"op": "add", "service": "ui"}) == {"ok": True, "added": False}
    assert world.journal == [] and world.binds == [], "already there: nothing to do"
    assert world.processes["ui"] is process

    assert running.handle({"op": "stop", "service": "ui"}) == {"ok": True}
    assert running.handle({"op": "start", "service": "ui"})["ok"] is True
    assert world.processes["ui"] is not process
    world.journal.clear()
    running.stop_all()  # down: the dashboard first, its stage is the last
    assert world.journal[:2] == ["SIGTERM ui", "wait ui"]
    assert on_disk(running, "ui").status == "stopped"


@pytest.mark.parametrize("name", ["users", "bus-door", "payments", None])
def test_add_refuses_any_part_but_the_dashboard(supervisor: Supervisor, world: World,
                                                name: str | None) -> None:
    answer = supervisor.handle({"op": "add", "service": name})

    assert answer == {"ok": False, "error": f"cannot add {name!r} to a running sandbox; "
                                            "what can be added: ui"}
    assert world.journal == [] and world.binds == []
    assert set(supervisor._state().services) == set(ALL)


def test_shutdown_sets_stopping_and_leaves_the_stopping_to_the_loop(
        running: Supervisor, world: World) -> None:
    assert running.handle({"op": "shutdown"}) == {"ok": True}
    assert running.stopping is True
    assert world.journal == []


def test_reap_reports_a_crashed_service_once(
        running: Supervisor, world: World, printer: RecordingPrinter) -> None:
    world.processes["products"].exit(-9)

    running._reap()
    running._reap()

    saved = on_disk(running, "products")
    assert (saved.status, saved.pid, saved.exit) == ("crashed", None, "killed by SIGKILL")
    assert "products" not in running.processes
    assert printer.events == [
        ("warning", "products killed by SIGKILL; it stays down until: msshop start products")]
    assert {name: on_disk(running, name).status for name in ALL if name != "products"} == \
        dict.fromkeys(["bus", "users", "orders", "query"], "running")
    assert running.handle({"op": "stop", "service": "products"}) == {
        "ok": False,
        "error": "products is not running (crashed); start it with: msshop start products"}
    assert running.handle({"op": "start", "service": "products"})["ok"] is True
    assert on_disk(running, "products").status == "running"


def test_stop_all_stops_each_stage_together_in_reverse_stage_order(
        running: Supervisor, world: World, printer: RecordingPrinter) -> None:
    running.stop_all()

    # a stage's services are all sent SIGTERM before any is waited for: they stop at once
    assert world.journal == [
        "SIGTERM query", "wait query",
        "SIGTERM users", "SIGTERM products", "SIGTERM orders",
        "wait users", "wait products", "wait orders",
        "SIGTERM bus", "wait bus"]
    assert {name: on_disk(running, name).status for name in ALL} == \
        dict.fromkeys(ALL, "stopped")
    assert {name: on_disk(running, name).pid for name in ALL} == dict.fromkeys(ALL)
    assert running.processes == {}
    assert printer.events == [("info", f"{name} stopped")
                              for name in ("query", "users", "products", "orders", "bus")]


def test_a_service_that_ignores_sigterm_is_killed_once_its_stage_deadline_passes(
        running: Supervisor, world: World, printer: RecordingPrinter) -> None:
    world.ignore_sigterm.add("products")
    stop_timeout = running.settings.stop_timeout
    began = world.clock.now

    running.stop_all()

    assert world.journal[2:9] == [
        "SIGTERM users", "SIGTERM products", "SIGTERM orders",
        "wait users", "wait products", "wait orders",
        "SIGKILL products"]
    # one deadline for the stage: once products has had its stop_timeout, orders (already
    # ended) is not given another
    assert world.processes["users"].waits == [stop_timeout]
    assert world.processes["products"].waits == [stop_timeout, KILL_WAIT]
    assert world.processes["orders"].waits == [0.0]
    assert world.clock.now - began == stop_timeout, "the stage took one stop_timeout"
    assert world.processes["products"].exitcode() == -signal.SIGKILL
    assert {name: on_disk(running, name).status for name in ALL} == \
        dict.fromkeys(ALL, "stopped")
    assert ("warning", f"products did not stop within {stop_timeout:g} s of SIGTERM; "
                       "killed") in printer.events
    assert world.journal[-2:] == ["SIGTERM bus", "wait bus"], "the bus still stops last"


def test_the_nodes_of_a_nats_bus_stop_one_after_another_and_last(
        running: Supervisor, world: World) -> None:
    as_nats_cluster(running, world, ["bus", "bus-2", "bus-3"])

    running.stop_all()

    assert world.journal == [
        "SIGTERM query", "wait query",
        "SIGTERM users", "SIGTERM products", "SIGTERM orders",
        "wait users", "wait products", "wait orders",
        "SIGTERM bus", "wait bus", "SIGTERM bus-2", "wait bus-2", "SIGTERM bus-3", "wait bus-3"]
    assert running.processes == {}


def test_a_nats_node_restarts_with_its_own_ports_checked_free_then_let_go(
        running: Supervisor, world: World) -> None:
    as_nats_cluster(running, world, ["bus", "bus-2"])
    services = running._state().services
    services["bus"].route_port = 7106
    node = services["bus-2"]
    node.port, node.monitor_port, node.route_port = 7120, 7121, 7122
    world.by_port[7121] = "bus-2"  # its health is asked on its monitoring port

    answer = running.handle({"op": "restart", "service": "bus-2"})

    assert answer["ok"] is True
    assert world.journal == ["SIGTERM bus-2", "wait bus-2", "start bus-2", "healthy bus-2"]
    # bound again before it starts (a port taken meanwhile is named), let go as it starts
    assert world.binds == [(HOST, 7120, "bus-2"), (HOST, 7121, "bus-2 (monitoring)"),
                           (HOST, 7122, "bus-2 (cluster)")]
    assert running.ports.held == {} and running.ports.listening == {}
    config = json.loads((running.paths.nats / "bus-2.conf").read_text())
    assert (config["port"], config["http"]) == (7120, f"{HOST}:7121")
    assert config["cluster"]["routes"] == [f"nats-route://{HOST}:7106"]
    assert world.preloaded == [], "nothing of ours is imported for a nats-server"


def as_nats_cluster(supervisor: Supervisor, world: World, nodes: list[str]) -> None:
    """Make the running sandbox's bus a cluster of nats-server nodes, each running."""
    state = supervisor._state()
    state.bus = BusState(backend="nats", servers=[f"nats://{HOST}:{BASE_PORT}"] * len(nodes))
    bus = world.processes["bus"]
    for node in nodes:
        state.services[node] = ServiceState(
            name=node, port=BASE_PORT, url=f"nats://{HOST}:{BASE_PORT}",
            db=str(supervisor.paths.nats_store(node)), log=str(bus.log_path),
            status="running", kind="nats-server")
        if node not in supervisor.processes:
            process = FakeProcess(world, node, bus.data, bus.log_path, bus.context)
            process.start(cast(socket.socket, None), (0, 0), [])
            supervisor.processes[node] = world.processes[node] = process
    world.journal.clear()


class FakeKind:
    """A third kind of process, as the next one (any executable given a port, a data
    directory and a credential) would plug in: it serves the same /health, keeps its data
    in a directory, and shows only the log lines that say "shown"."""

    name = "executable"
    stops_alone = False

    def __init__(self, world: World, paths: SandboxPaths) -> None:
        self.world, self.paths = world, paths

    def reserve(self, spec: ServiceSpec, ports: PortBook) -> list[ServiceState]:
        port = ports.listen(spec.name, BASE_PORT + spec.port_offset)
        self.world.journal.append(f"reserve {spec.name}")
        return [ServiceState(name=spec.name, port=port, url=f"http://{HOST}:{port}",
                             db=str(self.paths.data / spec.name),
                             log=str(self.paths.logs / f"{spec.name}.log"), kind=self.name)]

    def part(self, service: ServiceState) -> str:
        return service.name

    def own_ports(self, service: ServiceState) -> list[tuple[int, str]]:
        return []

    def warm_up(self, names: Sequence[str]) -> None:
        self.world.journal.append(f"warm up {' '.join(names)}")

    def spawn(self, service: ServiceState, sandbox: State) -> ChildProcess:
        process = FakeProcess(self.world, service.name, Path(service.db), Path(service.log))
        self.world.processes[service.name] = process
        return process

    def health(self, service: ServiceState, host: str, timeout: float) -> Health | None:
        return self.world.probe(host, service.port, timeout)

    def ready(self, service: ServiceState, host: str, timeout: float) -> Health | None:
        return self.health(service, host, timeout)

    def unready(self, service: ServiceState, host: str) -> str:
        return ""

    def remove_data(self, service: ServiceState) -> None:
        self.world.journal.append(f"remove data {service.name}")
        shutil.rmtree(service.db, ignore_errors=True)

    def worth_showing(self, lines: list[str]) -> list[str]:
        return [line for line in lines if "shown" in line]

    def joined(self, sandbox: State) -> None:
        self.world.journal.append("joined")


class ShowingPrinter(RecordingPrinter):
    """A live view: it is asked for new log lines, and keeps them."""

    refresh_interval = 0.1

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str]] = []

    def log_lines(self, service: str, lines: list[str]) -> None:
        self.lines += [(service, line) for line in lines]


def test_a_new_kind_of_process_plugs_in_with_no_change_to_the_loop(
        tmp_path: Path, world: World) -> None:
    settings = Settings.from_values({**defaults(), "sandbox.dir": tmp_path / "sandbox",
                                     "sandbox.base_port": BASE_PORT})
    printer = ShowingPrinter()
    paths = SandboxPaths(settings.sandbox_dir)
    kinds = {**world.kinds(settings), "executable": FakeKind(world, paths)}
    query_by_it = [(spec, "executable" if spec.name == "query" else kind)
                   for spec, kind in lineup(settings)]
    supervisor = Supervisor(settings, printer, "detached", kinds=kinds, lineup=query_by_it,
                            bus=bus_state, bind=world.bind, clock=world.clock.monotonic,
                            sleep=world.clock.sleep)
    try:
        supervisor.paths.create()
        services = supervisor.reserve_all()  # as prepare() reserves every port
        assert world.binds == [(HOST, BASE_PORT + spec.port_offset, spec.name)
                               for spec in SERVICES]
        assert services["query"].kind == "executable"
        assert services["users"].kind == "service"
        supervisor.state = stopped_sandbox(supervisor.paths)
        supervisor.state.services = services

        supervisor.start_all()

        assert world.journal == [
            "reserve query",
            "start bus", "healthy bus",
            "start users", "start products", "start orders",
            "warm up query",  # while the stage before it starts, as services are preloaded
            "healthy users", "healthy products", "healthy orders",
            "start query", "healthy query"]
        assert ["query"] not in world.preloaded
        saved = on_disk(supervisor, "query")
        assert (saved.kind, saved.status, saved.pid) == \
            ("executable", "running", world.processes["query"].pid)
        assert world.processes["orders"].context is not None
        assert world.processes["orders"].context.peer_urls["query"] == \
            f"http://{HOST}:{BASE_PORT + 4}", "the services may call it"

        # in status, as any other process
        assert supervisor.health()["query"] == {"status": "ok", "ready_at": world.clock.now}

        # its log lines, filtered as it says
        log = Path(saved.log)
        log.parent.mkdir(parents=True, exist_ok=True)
        supervisor.followers = {"query": LogFollower(log)}
        log.write_text("a line it keeps to itself\nshown: listening\n")
        supervisor._show_new_log_lines()
        assert printer.lines == [("query", "shown: listening")]

        # reset: stopped in its stage, its data removed, started again
        Path(saved.db).mkdir(parents=True)
        (Path(saved.db) / "rows").write_text("rows")
        world.journal.clear()
        assert supervisor.handle({"op": "reset"}) == {"ok": True}
        assert world.journal[:2] == ["SIGTERM query", "wait query"]
        assert "remove data query" in world.journal
        assert not Path(saved.db).exists()
        assert world.journal[-2:] == ["start query", "healthy query"]

        world.journal.clear()
        assert supervisor.handle({"op": "stop", "service": "query"}) == {"ok": True}
        assert world.journal == ["SIGTERM query", "wait query"]
        assert on_disk(supervisor, "query").status == "stopped"
    finally:
        supervisor.close()
