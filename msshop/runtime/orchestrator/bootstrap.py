"""Which kind of process runs each part of the sandbox, and the supervisor wired to them.

The one place that knows every kind (kind.py): a new kind is a class of its own and an
entry here, and the supervisor's loop stays as it is.
"""

from __future__ import annotations

from msshop.contracts import streams
from msshop.contracts.config import Settings
from msshop.contracts.errors import SandboxError
from msshop.contracts.topology import BUS_DOOR, DASHBOARD, SERVICES, ServiceSpec
from msshop.runtime.fd_limit import raise_fd_limit
from msshop.runtime.orchestrator.broker import external_bus
from msshop.runtime.orchestrator.executable import ExecutableKind
from msshop.runtime.orchestrator.forked_service import ForkedServiceKind, foreign_callers
from msshop.runtime.orchestrator.kind import ProcessKind
from msshop.runtime.orchestrator.nats_node import NatsNodeKind, managed_bus
from msshop.runtime.orchestrator.printer import Printer
from msshop.runtime.orchestrator.state import (
    BusState,
    SandboxPaths,
    ServiceState,
    sandbox_identity,
)
from msshop.runtime.orchestrator.supervisor import Supervisor

# the dashboard, run as msshop's services are: at `up --ui`, or added later by `msshop ui`
DASHBOARD_PART: tuple[ServiceSpec, str] = (DASHBOARD, ForkedServiceKind.name)


def process_kinds(settings: Settings) -> dict[str, ProcessKind]:
    """Every kind the supervisor can run, by the name its processes' state records."""
    kinds: list[ProcessKind] = [ForkedServiceKind(settings), NatsNodeKind(settings),
                                ExecutableKind(settings)]
    return {kind.name: kind for kind in kinds}


def lineup(settings: Settings) -> list[tuple[ServiceSpec, str]]:
    """Each part of the topology and the kind that runs it: the bus is nats-server nodes
    with `--bus nats`, and nothing at all with bus.url (a server msshop does not start); a
    part whose settings name a command is that program (services.<name>.command); and on
    nats, the bus's door, where the programs of your own read the nodes."""
    parts: list[tuple[ServiceSpec, str]] = []
    for spec in SERVICES:
        if spec.name == "bus" and settings.bus_backend == "nats":
            if not settings.bus_url:
                parts.append((spec, NatsNodeKind.name))
            continue
        if spec.name in settings.commands:
            parts.append((spec, ExecutableKind.name))
            continue
        parts.append((spec, ForkedServiceKind.name))
    if settings.bus_backend == "nats" and foreign_callers(settings, BUS_DOOR.name):
        parts.append((BUS_DOOR, ForkedServiceKind.name))  # programs of your own read there
    if settings.ui_enabled:
        parts.append(DASHBOARD_PART)
    return parts


def addable() -> list[tuple[ServiceSpec, str]]:
    """The parts a running sandbox may be given after `up`, each with the kind that runs
    it (the supervisor's `add`): the dashboard, which `msshop ui` adds to a sandbox started
    without it."""
    return [DASHBOARD_PART]


def bus_state(settings: Settings, services: dict[str, ServiceState]) -> BusState:
    """What carries the events, once every process's ports are bound: named for the
    sandbox's identity (made at its first `up`, kept in data/sandbox.id). On a server
    msshop does not start, the stream is made or checked now, before anything starts."""
    identity = sandbox_identity(SandboxPaths(settings.sandbox_dir))
    if settings.bus_backend != "nats":
        return BusState(backend=settings.bus_backend, sandbox=identity)
    stream = settings.bus_stream or streams.default_stream(identity)
    if settings.bus_url:
        bus = external_bus(settings.bus_url, settings.bus_dedup_window, identity, stream)
        claim_stream(bus)
        return bus
    return managed_bus(settings, services, identity, stream)


def claim_stream(bus: BusState) -> None:
    """Make the sandbox's stream on an external server, or check that the one there is
    this sandbox's and of msshop's shape: a SandboxError (one line, the fix) if not. A
    server that cannot be asked is no reason to refuse: the services retry it, and their
    relays say why (as with a wrong password)."""
    import asyncio

    from msshop.bus.interface import BusUnavailable
    from msshop.bus.jetstream import JetStreamBus, StreamRefused

    async def claim() -> None:
        client = JetStreamBus(bus.address("owner", ""), "msshop-supervisor")
        try:
            await client.claim()
        finally:
            await client.close()

    try:
        asyncio.run(claim())  # over before the first fork: no loop or thread is left
    except StreamRefused as exc:
        raise SandboxError(exc.message) from None
    except BusUnavailable:
        pass


def supervisor(settings: Settings, printer: Printer, mode: str,
               inherited_fds: list[int] | None = None) -> Supervisor:
    raise_fd_limit()  # before any fork: every service and nats-server inherits it
    return Supervisor(settings, printer, mode, inherited_fds, kinds=process_kinds(settings),
                      lineup=lineup(settings), bus=bus_state, addable=addable())
