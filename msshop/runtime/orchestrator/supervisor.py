"""The supervisor: starts the services stage by stage, watches them, obeys commands, stops them.

It is a plain single-threaded select loop (no event loop, no threads), because it forks:
a fork taken while another thread holds a lock can leave the child stuck on that lock.
It wakes for three things: a signal (SIGCHLD when a service ends, SIGTERM/SIGINT/SIGHUP to
stop), a command on the control socket, or the printer's refresh tick. No client of the
control socket can hold it: each connection is non-blocking, in the same selector, with a
deadline (control.py).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import shutil
import signal
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from setproctitle import setproctitle

from msshop.contracts.config import Settings
from msshop.contracts.credentials import digest, service_credential
from msshop.contracts.errors import SandboxError
from msshop.contracts.topology import BY_NAME, SERVICES, ServiceSpec, stages
from msshop.runtime.orchestrator import broker
from msshop.runtime.orchestrator.control import ControlServer
from msshop.runtime.orchestrator.health import probe, probe_nats
from msshop.runtime.orchestrator.logs import LogFollower, last_error_line
from msshop.runtime.orchestrator.printer import Printer
from msshop.runtime.orchestrator.process import ServiceProcess, bind, describe_exit, preload
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
from msshop.runtime.platform.context import ServiceContext

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
HEALTH_REFRESH = 1.0
KILL_WAIT = 5.0  # seconds for the kernel to reap a process sent SIGKILL


class Interrupted(SandboxError):
    def __init__(self) -> None:
        super().__init__("interrupted while starting; everything started was stopped")


# What the supervisor uses of the outside world, each a constructor argument that defaults to
# the real thing, so that a unit test can hand it fakes and check the command handling with
# no fork, no socket and no waiting (tests/unit/test_supervisor.py).

class ChildProcess(Protocol):
    """One service process, as the supervisor drives it: ServiceProcess, or a test's fake."""

    @property
    def pid(self) -> int | None: ...

    @property
    def started_at(self) -> float | None: ...  # time.time() at the fork

    def start(self, sock: socket.socket, lifeline: tuple[int, int],
              close_in_child: Sequence[int]) -> None: ...

    def exitcode(self) -> int | None: ...

    def alive(self) -> bool: ...

    def terminate(self) -> None: ...  # SIGTERM, if it runs

    def wait(self, timeout: float) -> int | None: ...  # its exit code; None: still runs

    def kill(self) -> None: ...  # SIGKILL, if it runs


class Probe(Protocol):
    """health.probe: the service's /health document, or None if it does not answer."""

    def __call__(self, host: str, port: int, timeout: float) -> dict[str, Any] | None: ...


ProcessFactory = Callable[[ServiceSpec, ServiceContext, Path, str], ChildProcess]
BrokerFactory = Callable[[str, Path, Path], ChildProcess]  # (node, config, log path)


class Supervisor:
    def __init__(self, settings: Settings, printer: Printer, mode: str,
                 inherited_fds: list[int] | None = None, *,
                 new_process: ProcessFactory = ServiceProcess,
                 new_broker: BrokerFactory = broker.BrokerProcess,
                 bind: Callable[[str, int, str], socket.socket] = bind,
                 preload: Callable[[Sequence[ServiceSpec]], None] = preload,
                 probe: Probe = probe,
                 probe_broker: Probe = probe_nats,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.new_process = new_process  # (spec, context, log path, log level), not started
        self.new_broker = new_broker  # a nats-server node, not started
        self.bind = bind  # (host, port, service name) -> a bound socket
        self.preload = preload  # imports what these services run on, so forks start warm
        self.probe = probe
        self.probe_broker = probe_broker  # a nats-server's health, on its monitoring port
        self.clock = clock  # monotonic: startup deadlines, the live view's health refresh
        self.sleep = sleep
        self.settings = settings
        self.inherited_fds = inherited_fds or []  # the caller's, which children must not keep
        self.printer = printer
        self.mode = mode
        self.paths = SandboxPaths(settings.sandbox_dir)
        self.lock = SupervisorLock(self.paths)
        self.sockets: dict[str, socket.socket] = {}  # bound, not yet handed to a child
        # a nats node's other ports (monitoring, cluster), held until that node starts: a
        # port let go at once could be taken meanwhile, e.g. as another node's outgoing end
        self.reserved: dict[str, list[socket.socket]] = {}
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
        host = self.settings.host
        services: dict[str, ServiceState] = {}
        bus = BusState(backend=self.settings.bus_backend)
        try:
            for spec in SERVICES:
                if spec.name == "bus" and bus.backend == "nats":
                    bus = self._bind_broker(services)
                    continue
                base = self.settings.base_port
                wanted = base + spec.port_offset if base else 0
                sock = self.bind(host, wanted, spec.name)
                self.sockets[spec.name] = sock
                port = sock.getsockname()[1]
                services[spec.name] = ServiceState(
                    name=spec.name, port=port, url=f"http://{_url_host(host)}:{port}",
                    db=str(spec.db_path(self.paths.root)), log=str(spec.log_path(self.paths.root)),
                )
        except SandboxError:
            self.close()
            raise
        self.control = ControlServer(secrets.token_hex(16), clock=self.clock)
        self.state = State(
            sandbox=str(self.paths.root), host=host, supervisor_pid=os.getpid(),
            control_port=self.control.port, token=self.control.token, mode=self.mode,
            started_at=time.time(), services=services, bus=bus,
        )
        if self.printer.refresh_interval:  # from here on, every line the services log is shown
            self.followers = {s.name: LogFollower(Path(s.log)) for s in services.values()}
        self._install_signals()
        write_state(self.paths, self.state)
        return self.state

    def _bind_broker(self, services: dict[str, ServiceState]) -> BusState:
        """The nats bus: an existing server (bus.url), or nodes of our own, each with its
        client port bound now (a taken one is found before anything starts) and its
        monitoring and route ports checked free."""
        settings = self.settings
        if settings.bus_url:
            return external_bus(settings.bus_url, settings.bus_dedup_window)
        broker.find_server()  # not installed: say so before anything starts
        host, base = settings.host, settings.base_port
        names = broker.node_names(settings.bus_nodes)
        for index, name in enumerate(names):
            wanted = broker.node_ports(base, index) if base else (0, 0, 0)
            sock = self.bind(host, wanted[0], name)
            self.sockets[name] = sock
            port = sock.getsockname()[1]
            monitor = self._reserve(name, host, wanted[1], f"{name} (monitoring)")
            route = (self._reserve(name, host, wanted[2], f"{name} (cluster)")
                     if len(names) > 1 else None)
            services[name] = ServiceState(
                name=name, port=port, url=f"nats://{_url_host(host)}:{port}",
                db=str(self.paths.nats_store(name)), log=str(self.paths.logs / f"{name}.log"),
                kind="nats-server", monitor_port=monitor, route_port=route)
        return BusState(backend="nats",
                        servers=[services[name].url for name in names],
                        replicas=min(len(names), broker.MAX_REPLICAS),
                        dedup_window=settings.bus_dedup_window)

    def _reserve(self, name: str, host: str, port: int, what: str) -> int:
        """A port nats-server `name` will bind itself: bound now (a taken one is named; 0
        picks one) and held until that node starts."""
        sock = self.bind(host, port, what)
        self.reserved.setdefault(name, []).append(sock)
        number: int = sock.getsockname()[1]
        return number

    def _release(self, name: str) -> None:
        for sock in self.reserved.pop(name, []):
            sock.close()

    def _stages(self) -> list[list[str]]:
        """Service names in start order: the nodes of a nats bus take the bus's stage (an
        external bus has none)."""
        state = self.state
        ordered = []
        for stage in stages():
            names: list[str] = []
            for spec in stage:
                if spec.name == "bus" and state is not None and state.bus.backend == "nats":
                    names += [n for n, s in state.services.items() if s.kind == "nats-server"]
                else:
                    names.append(spec.name)
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
                self.preload([BY_NAME[n] for n in ordered[index + 1] if n in BY_NAME])
            self._await_healthy(stage)

    def _fork(self, name: str) -> None:
        state = self._state()
        service = state.services[name]
        sock = self.sockets.pop(name, None) or self.bind(state.host, service.port, name)
        process: ChildProcess
        if service.kind == "nats-server":
            config = self.paths.nats / f"{name}.conf"
            routes = [s.route_port for s in state.services.values() if s.route_port]
            broker.write_config(config, broker.server_config(
                name, state.host, (service.port, service.monitor_port or 0,
                                   service.route_port or 0),
                Path(service.db), state.token, routes))
            process = self.new_broker(name, config, Path(service.log))
            if name not in self.reserved and service.monitor_port:  # a restart: still free?
                for port, what in ((service.monitor_port, "monitoring"),
                                   (service.route_port, "cluster")):
                    if port:
                        self._reserve(name, state.host, port, f"{name} ({what})")
            self._release(name)  # now: nats-server binds them as it starts
        else:
            self.preload([BY_NAME[name]])
            if state.bus.backend == "nats":  # each fork starts with the client imported
                from msshop.bus.jetstream import import_nats

                import_nats()
            bus_timeout = self.settings.timeouts.get("bus", self.settings.http_timeout)
            context = ServiceContext(
                name=name,
                db_path=Path(service.db),
                peer_urls={n: s.url for n, s in state.services.items()
                           if n != name and s.kind == "service"},
                http_timeout=self.settings.http_timeout,
                timeouts=dict(self.settings.timeouts),
                bus_address=(state.bus.address(name, state.token, bus_timeout)
                             if state.bus.backend == "nats" else None),
                **credentials_for(name, state.token),
            )
            process = self.new_process(BY_NAME[name], context, Path(service.log),
                                       self.settings.log_level)
        process.start(sock, self.lifeline, self._fds_children_must_close())
        self.processes[name] = process
        service.status, service.pid, service.exit = "starting", process.pid, None
        service.started_at, service.ready_ms = process.started_at, None
        write_state(self.paths, state)

    def _fds_children_must_close(self) -> list[int]:
        fds = [*self.wakeup, *self.inherited_fds, *(s.fileno() for s in self.sockets.values()),
               *(s.fileno() for held in self.reserved.values() for s in held)]
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
                        + f"; see: msshop logs {name}"
                    )
                health = self._probe(service, timeout=0.5, ready=True)
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
                for name in pending:  # not left running half-started, nor called "starting"
                    self._stop(name)
                    state.services[name].status = "failed"
                    state.services[name].exit = f"not healthy within {timeout:g} s"
                write_state(self.paths, state)
                raise SandboxError(
                    f"{pending[0]} did not become healthy within {timeout:g} s; "
                    f"see: msshop logs {pending[0]}"
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

        The nodes of a nats bus stop one after another (a few ms each): nodes stopped at
        once cut each other's routes while writing, which nats-server logs as an error."""
        for stage in reversed(self._stages()):
            running = [name for name in stage if name in self.processes]
            nodes = [name for name in running if self._is_broker(name)]
            self._stop_together([name for name in running if name not in nodes])
            for node in nodes:
                self._stop_together([node])

    def _is_broker(self, name: str) -> bool:
        return self._state().services[name].kind == "nats-server"

    def _reap(self) -> None:
        """Notice services that ended without being asked to, and say so."""
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
                    for name, follower in self.followers.items():
                        lines = follower.new_lines()
                        if self._state().services[name].kind == "nats-server":
                            lines = broker.worth_showing(lines)
                        if lines:
                            self.printer.log_lines(name, lines)
                    if self.clock() >= next_health:
                        next_health = self.clock() + HEALTH_REFRESH
                        self.printer.refresh(self._state(), self.health())
        finally:
            control.detach()  # the connections still waiting are closed unanswered
            self.selector = None
            selector.close()

    def health(self) -> dict[str, dict[str, Any] | None]:
        state = self._state()
        return {name: (self._probe(s, timeout=0.3) if s.status == "running" else None)
                for name, s in state.services.items()}

    def _probe(self, service: ServiceState, timeout: float, ready: bool = False
               ) -> dict[str, Any] | None:
        """Its health; with `ready`, None until it can take its work (a nats-server that
        answers but is not ready yet is not started)."""
        host = self._state().host
        if service.kind == "nats-server":
            health = self.probe_broker(host, service.monitor_port or 0, timeout=timeout)
            if ready and health is not None and health.get("status") != "ok":
                return None
            return health
        return self.probe(host, service.port, timeout=timeout)

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
            if op == "reset":
                self.stop_all()
                self._delete_data()
                self.start_all()
                self.printer.event("reset: every service's data was deleted")
                return {"ok": True}
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

    def _delete_data(self) -> None:
        for service in self._state().services.values():
            if service.kind == "nats-server":
                shutil.rmtree(service.db, ignore_errors=True)
                continue
            for suffix in ("", "-wal", "-shm"):
                Path(service.db + suffix).unlink(missing_ok=True)

    # --- the end ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every service and leave nothing behind but data and logs."""
        if self.closed:
            return
        self.closed = True
        try:
            self.stop_all()
        finally:
            for sock in self.sockets.values():
                sock.close()
            self.sockets.clear()
            for name in list(self.reserved):
                self._release(name)
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


def credentials_for(name: str, token: str) -> dict[str, Any]:
    """The secrets a service gets at fork (in its memory only): the digest of the sandbox's
    token (to check its owner's calls), its own bus credential, and, for the bus, the
    digest of each writing service's credential (who may append, as whom)."""
    senders = ({digest(service_credential(token, spec.name)): spec.name
                for spec in SERVICES if spec.name != name}
               if name == "bus" else {})
    return {"admin": digest(token), "credential": service_credential(token, name),
            "senders": senders}


def external_bus(url: str, dedup_window: float) -> BusState:
    """bus.url: servers msshop does not start, and the credentials every part signs in with
    (the same for all: whoever runs that server decides who may do what)."""
    servers, user, password = [], "", ""
    for one in url.split(","):
        parts = urlsplit(one.strip())
        user = unquote(parts.username or user)
        password = unquote(parts.password or password)
        host = parts.hostname or ""
        servers.append(f"{parts.scheme}://{_url_host(host)}:{parts.port}")
    return BusState(backend="nats", servers=servers, external=True, user=user,
                    password=password, replicas=1, dedup_window=dedup_window)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
