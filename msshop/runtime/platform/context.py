"""What a service process is told about its world when it starts, and the resources it makes
from it (its database, its peers, its bus)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from msshop.contracts.config import KEPT_MIB, SPANS_KEPT, ConnectionLimits
from msshop.contracts.credentials import bearer
from msshop.runtime.platform.db import Database
from msshop.runtime.platform.landlock import Confinement
from msshop.runtime.platform.links import Doors, LinkedBus, Links
from msshop.runtime.platform.tasks import Tasks
from msshop.runtime.platform.tracing import Tracer

if TYPE_CHECKING:
    from msshop.bus.interface import Bus
    from msshop.bus.jetstream import NatsAddress
    from msshop.runtime.platform.peers import Peers


@dataclass(frozen=True)
class ServiceContext:
    name: str
    db_path: Path
    peer_urls: dict[str, str] = field(default_factory=dict)  # other services by name
    http_timeout: float = 2.0
    saga_step_timeout: float = 10.0  # orders: the orchestrated saga's wait for a reply
    port: int = 0  # the port it answers on (the dashboard checks each request's Host by it)
    # the dashboard alone: its owner's capability, for the page's buttons (the sandbox's
    # token and the supervisor's control port: services/dashboard/actions.py)
    owner: str | None = None
    control_port: int | None = None
    # the dashboard alone: each nats-server node's monitoring address (its health), by name
    monitors: dict[str, str] = field(default_factory=dict)
    timeouts: dict[str, float] = field(default_factory=dict)  # per dependency
    kept_mib: int = KEPT_MIB  # query only: the answers it keeps in memory, at most
    spans_kept: int = SPANS_KEPT  # finished spans kept for GET /spans (the tracer's ring)
    # the connections it takes: deadlines and a cap (runtime/platform/connections.py)
    connection_limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    # Secrets, from the supervisor at fork (see msshop.contracts.credentials):
    admin: str | None = None  # the digest of the sandbox's token: checks its owner's calls
    credential: str | None = None  # this service's own, shown to the bus
    senders: dict[str, str] = field(default_factory=dict)  # bus only: digest -> service
    bus_address: NatsAddress | None = None  # the nats bus (None: the sandbox's own log)
    sandbox: str = ""  # the sandbox's identity (data/sandbox.id): the bus's log is its own
    # by caller: the port it listens on, besides its own, for the calls of a program of your
    # own (its door: links.py's Doors), and the faults on what arrives there
    door_ports: dict[str, int] = field(default_factory=dict)
    doors: Doors = field(init=False, compare=False)
    # its doors speak NATS, not HTTP (the bus's door): the runner binds them as any door's,
    # and leaves them in `door_sockets` for the service to serve (uvicorn serves the rest)
    nats_doors: bool = False
    door_sockets: list[socket.socket] = field(init=False, compare=False)
    # the Landlock rule it starts under (its own directory read-write, what it runs on
    # read-only); None: the kernel does not hold the rule here (turned off, or no Landlock)
    confinement: Confinement | None = None
    tracer: Tracer = field(init=False, compare=False)
    # faults on this service's calls (POST /chaos with `to`): its Peers and bus act on them
    links: Links = field(init=False, compare=False)
    # the supervisor of its background work (relay, consumer, checkpoint): tasks.py
    tasks: Tasks = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tracer", Tracer(self.name, self.spans_kept))
        object.__setattr__(self, "links", Links(self.name))
        object.__setattr__(self, "doors", Doors(self.name, self.door_ports))
        object.__setattr__(self, "tasks", Tasks(self.name))
        object.__setattr__(self, "door_sockets", [])

    def database(self, migrations: list[str], tables: list[str]) -> Database:
        return Database(self, migrations, tables)

    def peers(self) -> Peers:
        from msshop.runtime.platform.peers import Peers  # only services that call others

        return Peers(self.peer_urls, self.http_timeout, self.tracer, self.timeouts,
                     self.links)

    def bus(self, peers: Peers) -> Bus:
        """The sandbox's bus: NATS JetStream if it has one, else its own log reached through
        `peers` (its calls are spans like any other); either way with this service's faults
        on its link to the bus (LinkedBus)."""
        if self.bus_address is not None:
            from msshop.bus.jetstream import JetStreamBus

            return LinkedBus(JetStreamBus(self.bus_address, f"msshop-{self.name}"),
                             self.links)
        from msshop.bus.event_log import EventLogBus
        from msshop.bus.interface import BusUnavailable
        from msshop.runtime.platform.http import HttpError

        headers = bearer(self.credential) if self.credential else None

        async def exchange(method: str, path: str, body: bytes | None,
                           timeout: float | None) -> tuple[int, bytes]:
            try:
                # the link's faults: LinkedBus applies them, on either backend, once
                reply = await peers.request(method, "bus", path, body, timeout=timeout,
                                            raw=True, headers=headers, link_faults=False)
            except HttpError as exc:
                raise BusUnavailable(exc.message) from None
            data: bytes = reply.data
            return reply.status, data

        return LinkedBus(EventLogBus(exchange), self.links)
