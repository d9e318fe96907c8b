"""The kind of process a node of the managed nats bus is: a nats-server (broker.py) that
stands in for the bus, one node or several (bus, bus-2 …), with its health asked of its
monitoring port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

from msshop.contracts.config import Settings
from msshop.contracts.kinds import Kind
from msshop.contracts.topology import DASHBOARD, ServiceSpec
from msshop.runtime.orchestrator import broker
from msshop.runtime.orchestrator.executable import ExecutableKind
from msshop.runtime.orchestrator.health import probe_nats
from msshop.runtime.orchestrator.kind import ChildProcess, Health, Probe
from msshop.runtime.orchestrator.ports import PortBook, url_host
from msshop.runtime.orchestrator.state import BusState, SandboxPaths, ServiceState, State
from msshop.runtime.platform.landlock import Confinement, kernel_rule

# (node, config, log path, its Landlock rule or None) -> the node, not started
NodeFactory = Callable[[str, Path, Path, Confinement | None], ChildProcess]


class NatsNodeKind:
    """nats-server nodes. They stop one after another: nodes stopped at once cut each
    other's routes while writing, which nats-server logs as an error."""

    name = Kind.NATS_SERVER
    stops_alone = True

    def __init__(self, settings: Settings, *, new_node: NodeFactory = broker.BrokerProcess,
                 probe: Probe | None = None) -> None:
        self.settings = settings
        self.paths = SandboxPaths(settings.sandbox_dir)
        self.new_node = new_node
        self.probe = probe or self.probe_node  # a node's health, on its monitoring port
        self.stream = ""  # the sandbox's stream, whose head a node's health tells (spawn)

    def reserve(self, spec: ServiceSpec, ports: PortBook) -> list[ServiceState]:
        """The bus's nodes, each with its client port bound now and its monitoring and
        route ports held (a taken one is found before anything starts)."""
        broker.find_server()  # not installed: say so before anything starts
        base = self.settings.base_port
        names = broker.node_names(self.settings.bus_nodes)
        nodes = []
        for index, name in enumerate(names):
            wanted = broker.node_ports(base, index) if base else (0, 0, 0)
            port = ports.listen(name, wanted[0])
            monitor = ports.hold(name, wanted[1], "monitoring")
            route = ports.hold(name, wanted[2], "cluster") if len(names) > 1 else None
            nodes.append(ServiceState(
                name=name, port=port, url=f"nats://{url_host(ports.host)}:{port}",
                db=str(self.paths.nats_store(name)), log=str(self.paths.logs / f"{name}.log"),
                kind=self.name, monitor_port=monitor, route_port=route,
                isolation="kernel" if kernel_rule(self.settings.kernel_isolation)
                else "none"))
        return nodes

    def part(self, service: ServiceState) -> str:
        return "bus"

    def own_ports(self, service: ServiceState) -> list[tuple[int, str]]:
        return [(port, what) for port, what in ((service.monitor_port, "monitoring"),
                                                (service.route_port, "cluster")) if port]

    def warm_up(self, names: Sequence[str]) -> None:
        pass  # nats-server is exec'd: nothing of ours to import

    def spawn(self, service: ServiceState, sandbox: State) -> ChildProcess:
        self.stream = sandbox.bus.stream
        config = self.configure(service, sandbox)
        # its store is its own directory; it reads its config (a file in the sandbox)
        Path(service.db).mkdir(mode=0o700, parents=True, exist_ok=True)
        confinement = (Confinement(Path(service.db), self.paths.root, readable=(config,))
                       if kernel_rule(self.settings.kernel_isolation) else None)
        return self.new_node(service.name, config, Path(service.log), confinement)

    def configure(self, service: ServiceState, sandbox: State) -> Path:
        """Write the node's config for the sandbox as it is now (who may sign in: the
        services, yours, the dashboard if it runs): in place, the file its rule reads."""
        config = self.paths.nats / f"{service.name}.conf"
        routes = [s.route_port for s in sandbox.services.values() if s.route_port]
        foreign = [s.name for s in sandbox.services.values() if s.kind == ExecutableKind.name]
        broker.write_config(config, broker.server_config(
            service.name, sandbox.host,
            (service.port, service.monitor_port or 0, service.route_port or 0),
            Path(service.db), sandbox.token, routes, sandbox.bus.sandbox, sandbox.bus.stream,
            foreign, dashboard=DASHBOARD.name in sandbox.services))
        return config

    def joined(self, sandbox: State) -> None:
        """The dashboard added: each running node's config written again with its user,
        then reloaded (SIGHUP: nats-server takes new users without a restart). A node
        not running gets it at its next start."""
        for service in sandbox.services.values():
            if service.kind == self.name and service.status == "running" and service.pid:
                self.configure(service, sandbox)
                with contextlib.suppress(ProcessLookupError):  # ended: reaped soon after
                    os.kill(service.pid, signal.SIGHUP)

    def health(self, service: ServiceState, host: str, timeout: float) -> Health | None:
        return self.probe(host, service.monitor_port or 0, timeout=timeout)

    def probe_node(self, host: str, port: int, timeout: float) -> Health | None:
        return probe_nats(host, port, timeout, self.stream)

    def ready(self, service: ServiceState, host: str, timeout: float) -> Health | None:
        """A node that answers is not ready until it can take the stream's work."""
        health = self.health(service, host, timeout)
        return health if health is not None and health.get("status") == "ok" else None

    def unready(self, service: ServiceState, host: str) -> str:
        return ""  # its log says why

    def remove_data(self, service: ServiceState) -> None:
        shutil.rmtree(service.db, ignore_errors=True)

    def worth_showing(self, lines: list[str]) -> list[str]:
        return broker.worth_showing(lines)


def managed_bus(settings: Settings, services: dict[str, ServiceState], sandbox: str,
                stream: str) -> BusState:
    """The bus as its nodes make it: every node's client URL, the stream kept on up to
    three of them."""
    names = broker.node_names(settings.bus_nodes)
    return BusState(backend="nats", sandbox=sandbox, stream=stream,
                    servers=[services[name].url for name in names],
                    replicas=min(len(names), broker.MAX_REPLICAS),
                    dedup_window=settings.bus_dedup_window)
