"""The sandbox commands as library functions: up, down, status, stop/start/restart/kill, reset.

Only `up` imports the service stack (and only in the process that becomes the supervisor);
every other function talks to a running sandbox through its files and control socket.
"""

from __future__ import annotations

import json
import os
import signal
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from msshop.contracts.config import Settings
from msshop.contracts.errors import SandboxError, UsageError
from msshop.contracts.kinds import Kind
from msshop.contracts.topology import BY_NAME, SERVICES, keeps_doors_of
from msshop.runtime.orchestrator import control
from msshop.runtime.orchestrator.health import json_or_why, probe_nats
from msshop.runtime.orchestrator.signals import signal_group
from msshop.runtime.orchestrator.state import (
    SandboxPaths,
    State,
    is_running,
    pid_alive,
    read_state,
    remove_state,
)

if TYPE_CHECKING:
    from msshop.contracts.status import Health, ServiceStatus, StatusReport
    from msshop.runtime.orchestrator.printer import Printer


def up_foreground(settings: Settings, printer: Printer,
                  on_ready: Callable[[State], None]) -> None:
    """Run the sandbox in this process until SIGINT/SIGTERM or `msshop down`."""
    from msshop.runtime.orchestrator import bootstrap

    supervisor = bootstrap.supervisor(settings, printer, "foreground")
    try:
        state = supervisor.prepare()
        supervisor.start_all()
        on_ready(state)
        supervisor.serve_forever()
    finally:
        supervisor.close()


def up_detached(settings: Settings) -> tuple[State, list[str]]:
    """Start a supervisor in the background; return once every service is healthy.

    Returns the state and any notes for the person (e.g. a crashed run was cleaned up)."""
    paths = SandboxPaths(settings.sandbox_dir)
    paths.create()  # here, so a directory that cannot be made is this command's clear error
    if is_running(paths):
        _already_running(paths)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the supervisor-to-be
        os.close(read_end)
        code = 1
        try:
            code = _daemon(settings, write_end)
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as ready:
        answer = ready.readline()  # one line once the daemon is ready or failed; EOF if it died
    try:
        result = json.loads(answer)
    except ValueError:
        os.waitpid(pid, 0)
        raise SandboxError(
            f"the supervisor died while starting; see {paths.supervisor_log}") from None
    if not result.get("ok"):
        os.waitpid(pid, 0)
        raise SandboxError(result["error"])
    state = read_state(paths)
    assert state is not None
    return state, list(result.get("notes", []))


def _daemon(settings: Settings, ready_fd: int) -> int:
    """The detached supervisor's life: own session, no terminal, events to supervisor.log."""
    os.setsid()
    paths = SandboxPaths(settings.sandbox_dir)

    def report(answer: dict[str, Any]) -> None:
        os.write(ready_fd, json.dumps(answer).encode() + b"\n")
        os.close(ready_fd)

    try:
        from msshop.runtime.orchestrator.process import fresh_stdio

        paths.create()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        stray = os.open(paths.supervisor_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(stray, 1)  # anything printed by accident lands in the log, not a dead terminal
        os.dup2(stray, 2)
        os.close(stray)
        fresh_stdio()
        from msshop.runtime.orchestrator import bootstrap
        from msshop.runtime.orchestrator.printer import FilePrinter

        supervisor = bootstrap.supervisor(settings, FilePrinter(paths.supervisor_log),
                                          "detached", inherited_fds=[ready_fd])
    except Exception as exc:  # report, never leave the caller waiting
        report({"ok": False, "error": f"the supervisor could not start: {exc}"})
        return 1
    try:
        supervisor.prepare()
        supervisor.start_all()
    except SandboxError as exc:
        supervisor.close()
        report({"ok": False, "error": exc.message})
        return 1
    except Exception as exc:
        supervisor.printer.event(traceback.format_exc(), "error")
        supervisor.close()
        report({"ok": False, "error": f"the supervisor failed: {exc}; see "
                                      f"{paths.supervisor_log}"})
        return 1
    report({"ok": True, "notes": supervisor.notes})
    supervisor.inherited_fds.clear()  # closed now: its number may be reused for a socket
    try:
        supervisor.serve_forever()
    except Exception:
        supervisor.printer.event(traceback.format_exc(), "error")
        return 1
    finally:
        supervisor.close()
    return 0


def _already_running(paths: SandboxPaths) -> None:
    state = read_state(paths)
    pid = f" (supervisor pid {state.supervisor_pid})" if state else ""
    raise SandboxError(
        f"a sandbox is already running in {paths.root}{pid}; stop it with: msshop down")


def running_state(settings: Settings) -> State:
    """The running sandbox's state, or a SandboxError saying none runs (and how to start one)."""
    paths = SandboxPaths(settings.sandbox_dir)
    state = read_state(paths)
    if state is None or not is_running(paths):
        crashed = ""
        if state is not None:
            remove_state(paths)
            crashed = (f" (cleared the state file of a crashed run: supervisor pid "
                       f"{state.supervisor_pid} is gone)")
        raise SandboxError(f"no sandbox is running in {paths.root}{crashed}; "
                           "start one with: msshop up --detach")
    return state


def down(settings: Settings) -> State:
    """Stop the running sandbox; returns the state it had. Waits until all is stopped."""
    paths = SandboxPaths(settings.sandbox_dir)
    state = running_state(settings)
    try:
        control.call(state.control_port, state.token, "shutdown", timeout=5)
    except SandboxError:
        if pid_alive(state.supervisor_pid):
            os.kill(state.supervisor_pid, signal.SIGTERM)
    deadline = time.monotonic() + settings.stop_timeout * len(SERVICES) + 5
    while is_running(paths):
        if time.monotonic() > deadline:
            raise SandboxError(
                f"the supervisor (pid {state.supervisor_pid}) did not stop in time; "
                f"see: msshop logs supervisor")
        time.sleep(0.01)
    return state


def status(settings: Settings) -> StatusReport:
    """What runs where, and each service's own view of its health and rows."""
    state = running_state(settings)
    services = []
    for name, service in state.services.items():
        health: Health | None = None
        unanswered = ""
        if service.status == "running":
            answer = health_or_why(state, name, timeout=1.0)
            health = cast("Health", answer) if isinstance(answer, dict) else None
            unanswered = answer if isinstance(answer, str) else ""
        report: ServiceStatus = {
            "name": name, "status": service.status, "pid": service.pid, "port": service.port,
            "url": service.url, "db": service.db, "log": service.log,
            "health": (health.get("status", "ok") if health
                       else _unanswered(service.pid) if service.status == "running" else "-"),
            "rows": health.get("rows") if health else None,  # a program of yours: maybe none
            "exit": service.exit, "ready_ms": service.ready_ms, "kind": service.kind,
        }
        if service.command:  # a program of your own runs as this service
            report["command"] = service.command
        if service.doors:  # where the calls of programs of your own arrive
            report["doors"] = service.doors
        # who holds the isolation rule: the service's own word, else what it was started with
        if isolation := (health.get("isolation") if health else None) or service.isolation:
            report["isolation"] = isolation
        if unanswered:  # why it is not answering: refused, reset, timed out
            report["unanswered"] = unanswered
        if health:  # what it says of replication, and the faults injected into it
            if health.get("problems"):  # background work failing: why it is "degraded"
                report["problems"] = health["problems"]
            if "outbox" in health:  # users, products, orders: the backlog
                report["outbox"] = health["outbox"]
            if "head" in health:  # the bus: its log's head
                report["head"] = health["head"]
            if "consumer" in health:  # query: the read model's position and lag
                report["consumer"] = health["consumer"]
            if "saga" in health:  # users, products, orders: the saga's step consumers
                report["saga"] = health["saga"]
            if health.get("chaos"):
                report["chaos"] = health["chaos"]
            if "nats" in health:  # a nats-server node: which, and who leads the stream
                report["nats"] = health["nats"]
            if "trespass" in health:  # a program of your own asked to break the rule
                report["trespass"] = health["trespass"]
        services.append(report)
    with_door_faults(services)
    return {
        "running": True, "sandbox": state.sandbox, "mode": state.mode,
        "supervisor": {"pid": state.supervisor_pid, "started_at": state.started_at},
        "services": services,
        "bus": {"backend": state.bus.backend, "servers": state.bus.servers,
                "external": state.bus.external, "replicas": state.bus.replicas,
                "sandbox": state.bus.sandbox, "stream": state.bus.stream},
    }


def with_door_faults(services: list[ServiceStatus]) -> None:
    """A program of your own has no /chaos: the faults on its links are kept by the
    services it calls, at its doors; shown as its own links, as ours show theirs."""
    for callee in services:
        chaos_there = callee.get("chaos")
        doors = chaos_there.get("doors", {}) if chaos_there else {}
        for caller, fault in doors.items():
            report = next((s for s in services if s["name"] == caller), None)
            if report is None:
                continue
            chaos = report.get("chaos") or {"latency_ms": 0.0, "jitter_ms": 0.0,
                                             "error_rate": 0.0}
            chaos.setdefault("links", {})[keeps_doors_of(callee["name"])] = fault
            report["chaos"] = chaos


def check_service(name: str, state: State | None = None) -> str:
    """A service of this sandbox (with a nats bus of several nodes: bus, bus-2 …)."""
    known = list(state.services) if state is not None else list(BY_NAME)
    if name not in known:
        raise UsageError(f"unknown service '{name}'; choose one of: " + ", ".join(known))
    return name


def check_msshop_service(name: str, state: State, doing: str) -> str:
    """A service msshop runs itself (not a nats-server node), for what only they can do."""
    check_service(name, state)
    kind = state.services[name].kind
    if kind != Kind.SERVICE:
        what = "a nats-server" if kind == Kind.NATS_SERVER else "a program of your own"
        raise UsageError(f"{name} is {what}, which cannot {doing}; stop, start or "
                         f"kill it instead (msshop kill {name})")
    return name


def command(settings: Settings, op: str, service: str | None = None) -> dict[str, Any]:
    """Send stop/start/restart/reset to the supervisor and wait for its answer."""
    state = running_state(settings)
    if service is not None:
        check_service(service, state)
    timeout = settings.startup_timeout + settings.stop_timeout * len(SERVICES) + 5
    args = {} if service is None else {"service": service}
    return control.call(state.control_port, state.token, op, timeout=timeout, **args)


def start(settings: Settings, service: str, restart: bool = False
          ) -> tuple[float, Health | None]:
    """Start (or restart) one service: how long it took to become healthy (ms), and what it
    says of itself now (healthy is not always able: a query service may be catching up)."""
    answer = command(settings, "restart" if restart else "start", service)
    state = running_state(settings)
    return float(answer["ready_ms"]), cast("Health | None", health_of(state, service, 1.0))


def health_of(state: State, name: str, timeout: float) -> dict[str, Any] | None:
    """A service's /health, or a nats-server's health in the same shape; None: no answer."""
    found = health_or_why(state, name, timeout)
    return found if isinstance(found, dict) else None


def health_or_why(state: State, name: str, timeout: float) -> dict[str, Any] | str:
    """health_of, or why no health came ("connection refused", "no answer within 1 s")."""
    service = state.services[name]
    if service.kind == Kind.NATS_SERVER:
        port = service.monitor_port or 0
        node = probe_nats(state.host, port, timeout=timeout, stream=state.bus.stream)
        if node is not None:
            return node
        why = json_or_why(state.host, port, "/healthz", timeout, any_status=True)
        return why if isinstance(why, str) else "its monitoring port answers only at times"
    return json_or_why(state.host, service.port, "/health", timeout)


def _unanswered(pid: int | None) -> str:
    """The health of a process the supervisor runs but which did not answer: "not
    answering" while it is alive (flooded, stuck, out of descriptors), "down" if gone."""
    return "not answering" if pid is not None and pid_alive(pid) else "down"


def kill(settings: Settings, service: str) -> State:
    """SIGKILL a service and its process group, as a crash would; wait until the
    supervisor has noticed."""
    paths = SandboxPaths(settings.sandbox_dir)
    state = running_state(settings)
    check_service(service, state)
    pid = state.services[service].pid
    if pid is None or state.services[service].status != "running":
        raise SandboxError(f"{service} is not running ({state.services[service].status}); "
                           f"start it with: msshop start {service}")
    signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        current = read_state(paths)
        if current is None or current.services[service].pid != pid:
            return current or state
        time.sleep(0.01)
    raise SandboxError(f"sent SIGKILL to {service} (pid {pid}) but the supervisor has not "
                       "reported it; see: msshop logs supervisor")
