"""The kind of process msshop's own services are: forked from the supervisor, with the
stack imported beforehand (process.preload), each with its own SQLite file."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from msshop.contracts.config import Settings
from msshop.contracts.credentials import digest, service_credential
from msshop.contracts.kinds import Kind
from msshop.contracts.topology import BUS_DOOR, BY_NAME, DASHBOARD, PARTS, ServiceSpec
from msshop.runtime.orchestrator.health import probe
from msshop.runtime.orchestrator.kind import ChildProcess, Health, Probe
from msshop.runtime.orchestrator.ports import PortBook, loopback, url_host
from msshop.runtime.orchestrator.process import ServiceProcess, preload
from msshop.runtime.orchestrator.state import SandboxPaths, ServiceState, State
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.landlock import Confinement, kernel_rule

# (spec, context, log path, log level) -> the process, not started
ProcessFactory = Callable[[ServiceSpec, ServiceContext, Path, str], ChildProcess]


class ForkedServiceKind:
    """An msshop service: `ServiceProcess`, answering GET /health on its own port."""

    name = Kind.SERVICE
    stops_alone = False

    def __init__(self, settings: Settings, *, new_process: ProcessFactory = ServiceProcess,
                 preload: Callable[[Sequence[ServiceSpec]], None] = preload,
                 probe: Probe = probe) -> None:
        self.settings = settings
        self.paths = SandboxPaths(settings.sandbox_dir)
        self.new_process = new_process
        self.preload = preload  # imports what these services run on, so forks start warm
        self.probe = probe

    def reserve(self, spec: ServiceSpec, ports: PortBook) -> list[ServiceState]:
        base = self.settings.base_port
        host = loopback(ports.host) if spec.loopback_only else ports.host
        port = ports.listen(spec.name, base + spec.port_offset if base else 0, host)
        doors = {caller: ports.hold(spec.name, 0, door_for(caller))
                 for caller in foreign_callers(self.settings, spec.name)}
        return [ServiceState(
            name=spec.name, port=port, url=f"http://{url_host(host)}:{port}",
            db=str(spec.db_path(self.paths.root)), log=str(spec.log_path(self.paths.root)),
            kind=self.name, doors=doors or None,
            isolation="kernel" if kernel_rule(self.settings.kernel_isolation) else "process")]

    def part(self, service: ServiceState) -> str:
        return service.name

    def own_ports(self, service: ServiceState) -> list[tuple[int, str]]:
        """Its doors: it binds them as it starts (runner.doors)."""
        return [(port, door_for(caller)) for caller, port in (service.doors or {}).items()]

    def warm_up(self, names: Sequence[str]) -> None:
        self.preload([PARTS[name] for name in names])

    def spawn(self, service: ServiceState, sandbox: State) -> ChildProcess:
        name = service.name
        self.preload([PARTS[name]])
        if sandbox.bus.backend == "nats":  # each fork starts with the client imported
            from msshop.bus.jetstream import import_nats

            import_nats()
        settings = self.settings
        bus_timeout = settings.timeouts.get("bus", settings.http_timeout)
        context = ServiceContext(
            name=name,
            db_path=Path(service.db),
            # the parts it may call: those that speak HTTP (a nats node's URL is nats://)
            peer_urls={n: s.url for n, s in sandbox.services.items()
                       if n != name and s.url.startswith("http")},
            http_timeout=settings.http_timeout,
            saga_step_timeout=settings.saga_step_timeout,
            port=service.port,
            owner=sandbox.token if name == DASHBOARD.name else None,
            control_port=sandbox.control_port if name == DASHBOARD.name else None,
            monitors={node: f"http://{url_host(sandbox.host)}:{s.monitor_port}"
                      for node, s in sandbox.services.items() if s.monitor_port}
            if name == DASHBOARD.name else {},
            timeouts=dict(settings.timeouts),
            kept_mib=settings.query_kept_mib,
            spans_kept=settings.traces_spans_kept,
            connection_limits=settings.connections,
            bus_address=(sandbox.bus.address(name, sandbox.token, bus_timeout)
                         if sandbox.bus.backend == "nats" else None),
            sandbox=sandbox.bus.sandbox,
            door_ports=dict(service.doors or {}),
            nats_doors=name == BUS_DOOR.name,
            confinement=(Confinement(Path(service.db).parent, self.paths.root)
                         if kernel_rule(settings.kernel_isolation) else None),
            **credentials_for(name, sandbox.token),
        )
        return self.new_process(PARTS[name], context, Path(service.log), settings.log_level)

    def health(self, service: ServiceState, host: str, timeout: float) -> Health | None:
        if PARTS[service.name].loopback_only:
            host = loopback(host)
        return self.probe(host, service.port, timeout=timeout)

    def ready(self, service: ServiceState, host: str, timeout: float) -> Health | None:
        return self.health(service, host, timeout)  # it answers once its app is set up

    def unready(self, service: ServiceState, host: str) -> str:
        return ""  # its log says why

    def remove_data(self, service: ServiceState) -> None:
        shutil.rmtree(Path(service.db).parent, ignore_errors=True)  # its own directory

    def worth_showing(self, lines: list[str]) -> list[str]:
        return lines

    def joined(self, sandbox: State) -> None:
        pass  # none of them calls the part that may be added (the dashboard)


def foreign_callers(settings: Settings, callee: str) -> list[str]:
    """The programs of your own that may call `callee` (every one that calls others: the
    peers it is given are every other service): each gets a door into it (links.py)."""
    return [name for name in settings.commands
            if name != callee and name in BY_NAME and BY_NAME[name].calls_others]


def door_for(caller: str) -> str:
    return f"the door for {caller}'s calls"


def credentials_for(name: str, token: str) -> dict[str, Any]:
    """The secrets a service gets at fork (in its memory only): the digest of the sandbox's
    token (to check its owner's calls), its own credential, and the digest of the
    credential of each service it trusts (topology's `trusts`: the bus, who may append, as
    whom; products and users, who may take stock and credit)."""
    trusted = PARTS[name].trusts
    senders = {digest(service_credential(token, other)): other for other in trusted}
    return {"admin": digest(token), "credential": service_credential(token, name),
            "senders": senders}
