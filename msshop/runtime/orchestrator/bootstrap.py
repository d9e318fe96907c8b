"""Which kind of process runs each part of the sandbox, and the supervisor wired to them.

The one place that knows every kind (kind.py): a new kind is a class of its own and an
entry here, and the supervisor's loop stays as it is.
"""

from __future__ import annotations

from msshop.contracts.config import Settings
from msshop.contracts.topology import SERVICES, ServiceSpec
from msshop.runtime.fd_limit import raise_fd_limit
from msshop.runtime.orchestrator.broker import external_bus
from msshop.runtime.orchestrator.forked_service import ForkedServiceKind
from msshop.runtime.orchestrator.kind import ProcessKind
from msshop.runtime.orchestrator.nats_node import NatsNodeKind, managed_bus
from msshop.runtime.orchestrator.printer import Printer
from msshop.runtime.orchestrator.state import BusState, ServiceState
from msshop.runtime.orchestrator.supervisor import Supervisor


def process_kinds(settings: Settings) -> dict[str, ProcessKind]:
    """Every kind the supervisor can run, by the name its processes' state records."""
    kinds: list[ProcessKind] = [ForkedServiceKind(settings), NatsNodeKind(settings)]
    return {kind.name: kind for kind in kinds}


def lineup(settings: Settings) -> list[tuple[ServiceSpec, str]]:
    """Each part of the topology and the kind that runs it: the bus is nats-server nodes
    with `--bus nats`, and nothing at all with bus.url (a server msshop does not start)."""
    parts = []
    for spec in SERVICES:
        if spec.name == "bus" and settings.bus_backend == "nats":
            if not settings.bus_url:
                parts.append((spec, NatsNodeKind.name))
            continue
        parts.append((spec, ForkedServiceKind.name))
    return parts


def bus_state(settings: Settings, services: dict[str, ServiceState]) -> BusState:
    """What carries the events, once every process's ports are bound."""
    if settings.bus_backend != "nats":
        return BusState(backend=settings.bus_backend)
    if settings.bus_url:
        return external_bus(settings.bus_url, settings.bus_dedup_window)
    return managed_bus(settings, services)


def supervisor(settings: Settings, printer: Printer, mode: str,
               inherited_fds: list[int] | None = None) -> Supervisor:
    raise_fd_limit()  # before any fork: every service and nats-server inherits it
    return Supervisor(settings, printer, mode, inherited_fds, kinds=process_kinds(settings),
                      lineup=lineup(settings), bus=bus_state)
