"""The supervisor: starts the services stage by stage, watches them, obeys commands, stops them.

It is a plain single-threaded select loop (no event loop, no threads), because it forks:
a fork taken while another thread holds a lock can leave the child stuck on that lock.
It wakes for three things: a signal (SIGCHLD when a service ends, SIGTERM/SIGINT/SIGHUP to
stop), a command on the control socket, or the printer's refresh tick. No client of the
control socket can hold it: each connection is non-blocking, in the same selector, with a
deadline (control.py).

It treats every process alike: what differs between a forked service and a nats-server
node (their ports, how they start, answer for their health, keep data, log, and stop) is
their kind's (kind.py), looked up by the kind their state records.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from setproctitle import setproctitle

from msshop.contracts.config import Settings
from msshop.contracts.errors import SandboxError
from msshop.contracts.topology import DASHBOARD, ServiceSpec, stages
from msshop.runtime.orchestrator.control import ControlServer
from msshop.runtime.orchestrator.experiment_jobs import ExperimentJobs, scenarios
from msshop.runtime.orchestrator.kind import ChildProcess, Health, ProcessKind
from msshop.runtime.orchestrator.layout import move_to_service_dirs, moved_note
from msshop.runtime.orchestrator.log_files import LogFollower, last_error_line
from msshop.runtime.orchestrator.ports import Binder, PortBook, PortTaken, bind
from msshop.runtime.orchestrator.printer import Printer
from msshop.runtime.orchestrator.process import describe_exit
from msshop.runtime.orchestrator.signals import signal_group
from msshop.runtime.orchestrator.state import (
    BusState,
    SandboxPaths,
    ServiceState,
    State,
    SupervisorLock,
    pid_alive,
    read_state,
    remove_state,
    write_state,
)
from msshop.runtime.platform.landlock import kernel_rule_note

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
HEALTH_REFRESH = 1.0
KILL_WAIT = 5.0  # seconds for the kernel to reap a process sent SIGKILL
SHOWN_PER_TICK = 16 * 1024  # bytes of each log the live view shows at most per tick
# a process under the kernel's rule that dies of a refusal at start: what it may read is
# most likely too little (its runtime lives where msshop cannot tell)
REFUSED_HINT = (" (refused by the kernel's isolation rule: it may read the system, its "
                "own files and msshop's Python; name what else it runs on in [isolation] "
                "read or MSSHOP_ISOLATION_READ)")


class Interrupted(SandboxError):
    def __init__(self) -> None:
        super().__init__("interrupted while starting; everything started was stopped")


# (settings, every process's state) -> what carries the events (bootstrap.bus_state)
BusPlan = Callable[[Settings, dict[str, ServiceState]], BusState]


class Supervisor:
    """The manager. What it uses of the outside world is handed to it (bootstrap.py wires
    the real things), so that a unit test can hand it fakes and check the command handling
    with no fork, no socket and no waiting (tests/unit/test_supervisor.py)."""

    def __init__(self, settings: Settings, printer: Printer, mode: str,
                 inherited_fds: list[int] | None = None, *,
                 kinds: Mapping[str, ProcessKind],
                 lineup: Sequence[tuple[ServiceSpec, str]],
                 bus: BusPlan,
                 addable: Sequence[tuple[ServiceSpec, str]] = (),
                 bind: Binder = bind,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 experiments: ExperimentJobs | None = None) -> None:
        self.kinds = kinds  # by name, as ServiceState.kind records it
        self.lineup = lineup  # each part of the topology and the kind that runs it
        self.addable = addable  # the parts a running sandbox may be given later (add)
        self.plan_bus = bus
        self.ports = PortBook(settings.host, bind)
        self.clock = clock  # monotonic: startup deadlines, the live view's health refresh
        self.sleep = sleep
        self.settings = settings
        self.inherited_fds = inherited_fds or []  # the caller's, which children must not keep
        self.printer = printer
        self.mode = mode
        self.paths = SandboxPaths(settings.sandbox_dir)
        self.lock = SupervisorLock(self.paths)
        self.processes: dict[str, ChildProcess] = {}
        self.state: State | None = None
        self.control: ControlServer | None = None
        self.selector: selectors.DefaultSelector | None = None  # while serve_forever runs
        self.stopping = False
        self.lifeline = os.pipe()
        self.wakeup = os.pipe()
        self.followers: dict[str, LogFollower] = {}
        self.closed = False
        self.notes: list[str] = []  # what a person should hear about the start, besides errors
        # the experiment the dashboard asked for, run as a job of the supervisor's own
        self.experiments = experiments or ExperimentJobs(settings.sandbox_dir)

    # --- before any fork: everything that can fail cheaply ----------------------------------

    def prepare(self) -> State:
        """Take the sandbox's lock, clear a crashed run's leftovers, bind every port."""
        setproctitle("msshop: supervisor")  # in ps and top, detached or in the foreground
        self.paths.create()
        if not self.lock.acquire():
            existing = read_state(self.paths)
            pid = f" (supervisor pid {existing.supervisor_pid})" if existing else ""
            raise SandboxError(
                f"a sandbox is already running in {self.paths.root}{pid}; "
                "stop it with: msshop down"
            )
        stale = read_state(self.paths)
        if stale is not None:
            self._clear_stale(stale)
        try:
            moved = move_to_service_dirs(self.paths.root)  # nothing runs: nothing has it open
        except SandboxError:
            self.close()
            raise
        if moved:
            self.notes.append(moved_note(moved))
            self.printer.event(self.notes[-1])
        if unheld := kernel_rule_note(self.settings.kernel_isolation):  # said once, here
            self.notes.append(unheld)
            self.printer.event(unheld, "warning")
        try:
            services = self.reserve_all()
            bus = self.plan_bus(self.settings, services)  # an external stream: checked here
        except SandboxError:
            self.close()
            raise
        self.control = ControlServer(secrets.token_hex(16), clock=self.clock)
        self.state = State(
            sandbox=str(self.paths.root), host=self.settings.host, supervisor_pid=os.getpid(),
            control_port=self.control.port, token=self.control.token, mode=self.mode,
            started_at=time.time(), services=services,
            bus=bus,
        )
        if self.printer.refresh_interval:  # from here on, every line the services log is shown
            self.followers = {s.name: LogFollower(Path(s.log), most=SHOWN_PER_TICK)
                              for s in services.values()}
        self._install_signals()
        write_state(self.paths, self.state)
        return self.state

    def reserve_all(self) -> dict[str, ServiceState]:
        """Every process of the lineup, its ports bound (or held) and its state described."""
        services: dict[str, ServiceState] = {}
        for spec, kind in self.lineup:
            for service in self.kinds[kind].reserve(spec, self.ports):
                services[service.name] = service
        return services

    def _kind(self, name: str) -> ProcessKind:
        return self.kinds[self._state().services[name].kind]

    def _stages(self) -> list[list[str]]:
        """Process names in start order: each in the stage of the part it runs (the nodes
        of a nats bus in the bus's; an external bus has none). None before prepare()."""
        if self.state is None:
            return []
        services = self.state.services
        ordered = []
        for stage in stages():
            parts = {spec.name for spec in stage}
            names = [name for name, service in services.items()
                     if self.kinds[service.kind].part(service) in parts]
            if names:
                ordered.append(names)
        return ordered

    def _clear_stale(self, stale: State) -> None:
        deadline = self.clock() + 2.0  # the lifeline makes orphans exit within ~0.1 s
        for service in stale.services.values():
            while service.pid and pid_alive(service.pid) and self.clock() < deadline:
                self.sleep(0.02)
            if service.pid and pid_alive(service.pid):
                self.close()
                raise SandboxError(
                    f"a crashed sandbox left {service.name} running as pid {service.pid}; "
                    f"stop it with: kill {service.pid}"
                )
        remove_state(self.paths)
        note = (f"cleared the state file of a crashed sandbox (supervisor pid "
                f"{stale.supervisor_pid} is gone)")
        self.notes.append(note)
        self.printer.event(note, "warning")

    def _install_signals(self) -> None:
        for fd in self.wakeup:
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wakeup[1], warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_stop_signal)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes select via the fd

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    # --- starting and stopping services -----------------------------------------------------

    def start_all(self) -> None:
        """Stage by stage, each healthy before the next starts. While a stage starts up,
        the supervisor imports what the next one needs: the bus (which calls no one, so
        needs no peer client) is up before the rest of the stack has finished importing."""
        ordered = self._stages()
        for index, stage in enumerate(ordered):
            for name in stage:
                self._fork(name)
            if index + 1 < len(ordered):
                self._warm_up(ordered[index + 1])
            self._await_healthy(stage)

    def _warm_up(self, names: list[str]) -> None:
        """Ask each kind to ready these processes' start, all of its own at once."""
        by_kind: dict[str, list[str]] = {}
        for name in names:
            by_kind.setdefault(self._state().services[name].kind, []).append(name)
        for kind, named in by_kind.items():
            self.kinds[kind].warm_up(named)

    def _fork(self, name: str) -> None:
        state = self._state()
        service = state.services[name]
        kind = self._kind(name)
        sock = self.ports.take(name, service.port, kind.own_ports(service))
        try:
            process = kind.spawn(service, state)
        except BaseException:
            sock.close()
            raise
        self.ports.release(name)  # now: the process binds its own ports as it starts
        process.start(sock, self.lifeline, self._fds_children_must_close())
        self.processes[name] = process
        service.status, service.pid, service.exit = "starting", process.pid, None
        service.started_at, service.ready_ms = process.started_at, None
        write_state(self.paths, state)

    def _fds_children_must_close(self) -> list[int]:
        fds = [*self.wakeup, *self.inherited_fds, *self.ports.fds()]
        if self.lock.fd is not None:
            fds.append(self.lock.fd)
        if self.control is not None:  # the listening socket and every connection open
            fds.extend(self.control.fds())
        if self.selector is not None:
            fds.append(self.selector.fileno())
        return fds

    def _await_healthy(self, names: list[str]) -> None:
        state = self._state()
        timeout = self.settings.startup_timeout
        deadline = self.clock() + timeout
        pending = list(names)
        pause = 0.002
        while pending:
            for name in list(pending):
                service, process = state.services[name], self.processes[name]
                code = process.exitcode()
                if code is not None:
                    del self.processes[name]  # reported here as failed, not later as crashed
                    service.status, service.pid, service.exit = "failed", None, describe_exit(code)
                    write_state(self.paths, state)
                    quote = last_error_line(Path(service.log))
                    raise SandboxError(
                        f"{name} failed to start ({service.exit})"
                        + (f": {quote.strip()}" if quote else "")
                        + (REFUSED_HINT if service.isolation == "kernel" and quote
                           and "Permission denied" in quote else "")
                        + f"; see: msshop logs {name}"
                    )
                health = self._kind(name).ready(service, state.host, timeout=0.5)
                if health is not None:
                    service.status = "running"
                    # the service's own clock: it may be seen healthy later than it was
                    # (the supervisor imports the next stage's modules in between)
                    ready_at = health.get("ready_at") or time.time()
                    service.ready_ms = (ready_at - (service.started_at or 0)) * 1000
                    write_state(self.paths, state)
                    pending.remove(name)
                    self.printer.event(f"{name} ready on {service.url} (pid {service.pid}) "
                                       f"in {service.ready_ms:.0f} ms")
            if not pending:
                return
            if self.stopping:
                raise Interrupted()
            if self.clock() > deadline:
                first = pending[0]
                why = self._kind(first).unready(state.services[first], state.host)
                for name in pending:  # not left running half-started, nor called "starting"
                    self._stop(name)
                    state.services[name].status = "failed"
                    state.services[name].exit = f"not healthy within {timeout:g} s"
                write_state(self.paths, state)
                raise SandboxError(
                    f"{first} did not become healthy within {timeout:g} s"
                    + (f" ({why})" if why else "") + f"; see: msshop logs {first}"
                )
            self.sleep(pause)
            pause = min(pause * 2, 0.02)

    def _stop(self, name: str) -> None:
        self._stop_together([name])

    def _stop_together(self, names: list[str]) -> None:
        """SIGTERM to each, then wait for all of them on one deadline (stop_timeout), then
        SIGKILL to any still running: services stopped together take as long as the
        slowest of them, not the sum of their times."""
        if not names:
            return
        state = self._state()
        stopping: dict[str, ChildProcess] = {}
        for name in names:
            process = self.processes.pop(name, None)
            if process is not None and process.alive():
                state.services[name].status = "stopping"
                process.terminate()
                stopping[name] = process
        if stopping:
            write_state(self.paths, state)
        deadline = self.clock() + self.settings.stop_timeout
        for process in stopping.values():
            process.wait(max(0.0, deadline - self.clock()))
        for name, process in stopping.items():
            if process.alive():
                process.kill()
                process.wait(KILL_WAIT)
                self.printer.event(f"{name} did not stop within "
                                   f"{self.settings.stop_timeout:g} s of SIGTERM; killed",
                                   "warning")
            else:
                self.printer.event(f"{name} stopped")
        for name in names:
            state.services[name].status, state.services[name].pid = "stopped", None
        write_state(self.paths, state)

    def stop_all(self) -> None:
        """Stage by stage, the last started first, each stage's services together: query
        before the services it reads and calls, the bus last, so that no relay or
        consumer still running finds it gone (and logs that it is down).

        A kind whose processes stop alone (the nodes of a nats bus, a few ms each) has
        them stopped one after another, after the rest of their stage."""
        for stage in reversed(self._stages()):
            running = [name for name in stage if name in self.processes]
            alone = [name for name in running if self._kind(name).stops_alone]
            self._stop_together([name for name in running if name not in alone])
            for name in alone:
                self._stop_together([name])

    def _reap(self) -> None:
        """Notice services that ended without being asked to, and say so; and the end of
        an experiment."""
        if (ended := self.experiments.reap()) is not None:
            self.printer.event(f"experiment {ended} ended")
        state = self._state()
        for name, process in list(self.processes.items()):
            code = process.exitcode()
            if code is None:
                continue
            del self.processes[name]
            service = state.services[name]
            service.status, service.pid, service.exit = "crashed", None, describe_exit(code)
            write_state(self.paths, state)
            self.printer.event(f"{name} {service.exit}; it stays down until: "
                               f"msshop start {name}", "warning")

    # --- the loop ---------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Until a stop signal or `shutdown`. Nothing here waits on a client: the control
        connections are non-blocking, each with a deadline (control.py); only a command
        itself (starting a service waits until it is healthy) takes the loop for a while."""
        control = self.control
        assert control is not None
        selector = self.selector = selectors.DefaultSelector()
        try:
            selector.register(self.wakeup[0], selectors.EVENT_READ)
            control.attach(selector)
            interval = self.printer.refresh_interval or 1.0
            next_health = 0.0
            while not self.stopping:
                deadline = control.next_timeout()
                wait = interval if deadline is None else min(interval, deadline)
                for key, events in selector.select(wait):
                    if key.data is None:  # the wakeup pipe: a signal
                        _drain(self.wakeup[0])
                    else:
                        control.ready(key, events, self.handle)
                control.expire(self.handle)
                self._reap()
                if self.printer.refresh_interval:
                    self._show_new_log_lines()
                    if self.clock() >= next_health:
                        next_health = self.clock() + HEALTH_REFRESH
                        self.printer.refresh(self._state(), self.health())
        finally:
            control.detach()  # the connections still waiting are closed unanswered
            self.selector = None
            selector.close()

    def _show_new_log_lines(self) -> None:
        for name, follower in self.followers.items():
            lines = self._kind(name).worth_showing(follower.new_lines())
            if lines:
                self.printer.log_lines(name, lines)

    def health(self) -> dict[str, Health | None]:
        state = self._state()
        return {name: (self._kind(name).health(s, state.host, timeout=0.3)
                       if s.status == "running" else None)
                for name, s in state.services.items()}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one control command."""
        op = request.get("op")
        try:
            if op == "ping":
                return {"ok": True}
            if op == "shutdown":
                self.stopping = True
                return {"ok": True}
            if self.stopping:  # asked after a stop signal or `shutdown`, in the same turn
                return {"ok": False, "error": "the sandbox is stopping"}
            if op == "scenarios":  # what the dashboard offers to run
                return {"ok": True, "scenarios": scenarios(),
                        "running": self.experiments.running[0]
                        if self.experiments.running else None}
            if op == "experiment":  # the dashboard's: its reports go in its own directory
                ui = self._state().services.get(DASHBOARD.name)
                if ui is None:
                    return {"ok": False, "error": "experiments are run from the dashboard; "
                                                  "this sandbox runs without it"}
                started = self.experiments.start(Path(ui.db).parent, request.get("scenario"),
                                                 request.get("seconds"))
                self.printer.event(f"experiment {started['id']} started (pid "
                                   f"{started['pid']}), asked from the dashboard")
                return started
            if op == "reset":
                self.stop_all()
                self._delete_data()
                self.start_all()
                self.printer.event("reset: every service's data was deleted")
                return {"ok": True}
            if op == "add":  # a part the lineup left out, e.g. `msshop ui`'s dashboard
                return self.add(request.get("service"))
            name = request.get("service")
            known = self._state().services
            if not isinstance(name, str) or name not in known:
                return {"ok": False, "error": f"unknown service {name!r}; choose one of: "
                                              + ", ".join(known)}
            if op == "stop":
                if name not in self.processes:
                    status = self._state().services[name].status
                    return {"ok": False, "error": f"{name} is not running ({status}); "
                                                  f"start it with: msshop start {name}"}
                self._stop(name)
                return {"ok": True}
            if op == "kill":  # as a crash would: reported when it has ended (SIGCHLD)
                if name not in self.processes or self.processes[name].pid is None:
                    status = self._state().services[name].status
                    return {"ok": False, "error": f"{name} is not running ({status}); "
                                                  f"start it with: msshop start {name}"}
                pid = self.processes[name].pid
                assert pid is not None
                signal_group(pid, signal.SIGKILL)
                return {"ok": True, "pid": pid}
            if op in ("start", "restart"):
                if op == "start" and name in self.processes:
                    return {"ok": False, "error": f"{name} is already running (pid "
                                                  f"{self.processes[name].pid})"}
                if name in self.processes:
                    self._stop(name)
                self._fork(name)
                self._await_healthy([name])
                return {"ok": True, "ready_ms": self._state().services[name].ready_ms}
            return {"ok": False, "error": f"unknown command {op!r}"}
        except SandboxError as exc:
            return {"ok": False, "error": exc.message}

    def add(self, name: object) -> dict[str, Any]:
        """Give the running sandbox a part it was started without, as `up` would have:
        its ports reserved by its kind, its state written, forked, healthy; from then on a
        part like the others (stop, start, down, reset). Only the parts bootstrap.py names
        addable; one already there is left as it is."""
        state = self._state()
        addable = {spec.name: (spec, kind) for spec, kind in self.addable}
        if not isinstance(name, str) or name not in addable:
            return {"ok": False, "error": f"cannot add {name!r} to a running sandbox; what "
                                          "can be added: " + (", ".join(addable) or "nothing")}
        if name in state.services:
            return {"ok": True, "added": False}
        spec, kind = addable[name]
        try:
            added = self.kinds[kind].reserve(spec, self.ports)
        except PortTaken as taken:
            self.ports.drop(name)
            raise taken.in_running_sandbox() from None
        except BaseException:
            self.ports.drop(name)
            raise
        for service in added:
            state.services[service.name] = service
            if self.printer.refresh_interval:
                self.followers[service.name] = LogFollower(Path(service.log),
                                                           most=SHOWN_PER_TICK)
        write_state(self.paths, state)
        for each_kind in self.kinds.values():  # e.g. the nats nodes let its user sign in
            each_kind.joined(state)
        self.printer.event(f"{name} added to the running sandbox")
        names = [service.name for service in added]
        for each in names:
            self._fork(each)
        self._await_healthy(names)
        return {"ok": True, "added": True, "ready_ms": state.services[name].ready_ms}

    def _delete_data(self) -> None:
        for name, service in self._state().services.items():
            self._kind(name).remove_data(service)

    # --- the end ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every service and leave nothing behind but data and logs."""
        if self.closed:
            return
        self.closed = True
        try:
            self.experiments.stop()  # before the services: it heals what it broke
            self.stop_all()
        finally:
            self.ports.close()
            if self.control is not None:
                self.control.close()
            if self.lock.fd is not None:
                remove_state(self.paths)
                self.paths.lock_file.unlink(missing_ok=True)
                self.lock.release()
            signal.set_wakeup_fd(-1)
            for fd in (*self.lifeline, *self.wakeup):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.printer.close()

    def _state(self) -> State:
        assert self.state is not None, "prepare() first"
        return self.state


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
