"""The catalogue of services: names, ports, database files and start order, as plain data.

Cheap to import (the CLI validates service names with it) and the one place a new service is
added. `entry` names the service's `create_app` without importing it: the orchestrator
imports the stack once, in the supervisor, just before it forks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BUS = "bus"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    stage: int  # start order: every service of a stage is healthy before the next stage starts
    port_offset: int  # port = base_port + offset (when base_port is not 0)
    entry: str  # "module:function" returning the Starlette app
    owns: str  # what data the service owns, for people reading `msshop status`
    calls_others: bool = True  # needs the peer client (peers.py); the bus answers only
    publishes: bool = False  # records events (an outbox and its relay): may append to the bus
    # the services whose credential its routes declared `auth="services"` take (the bus:
    # every service, and the dashboard's feed, which reads; products and users: orders,
    # whose purchases take stock and credit)
    trusts: tuple[str, ...] = ()
    # listens on the loopback address whatever sandbox.host says (the dashboard: a page
    # with the owner's powers is for this machine alone)
    loopback_only: bool = False

    @property
    def db_filename(self) -> str:
        return f"{self.name}.db"

    def data_dir(self, sandbox: Path) -> Path:
        """The service's own directory, the one place its process may write (and the only
        part of the sandbox it may read: a Landlock rule names a directory, and SQLite's
        -wal, -shm and -journal files come and go beside the database)."""
        return sandbox / "data" / self.name

    def db_path(self, sandbox: Path) -> Path:
        return self.data_dir(sandbox) / self.db_filename

    def legacy_db_path(self, sandbox: Path) -> Path:
        """Where a sandbox made before issue 24 keeps the database (moved at `up`)."""
        return sandbox / "data" / self.db_filename

    def log_path(self, sandbox: Path) -> Path:
        return sandbox / "logs" / f"{self.name}.log"


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("bus", 0, 0, "msshop.runtime.services.bus:create_app", "the event log",
                calls_others=False, trusts=("users", "products", "orders", "query", "ui")),
    ServiceSpec("users", 1, 1, "msshop.runtime.services.users:create_app", "users",
                publishes=True, trusts=("orders",)),
    ServiceSpec("products", 1, 2, "msshop.runtime.services.products:create_app", "products",
                publishes=True, trusts=("orders",)),
    ServiceSpec("orders", 1, 3, "msshop.runtime.services.orders:create_app", "orders",
                publishes=True),
    ServiceSpec("query", 2, 4, "msshop.runtime.services.query:create_app",
                "its read model: copies of users, products and orders"),
)
BY_NAME: dict[str, ServiceSpec] = {spec.name: spec for spec in SERVICES}
NAMES: tuple[str, ...] = tuple(BY_NAME)
#: The door to a NATS bus for the programs of your own that read it (services/bus_door):
#: a proxy in front of the nats-server nodes, where the bus's delivery faults for such a
#: reader are applied, as the log bus applies them itself. Not a part of the shop (no data,
#: in no catalogue of services): run only when the bus is NATS and a program of your own
#: reads it, in the bus's stage (it reaches the nodes only once a reader connects).
BUS_DOOR = ServiceSpec("bus-door", 0, 7, "msshop.runtime.services.bus_door:create_app",
                       "nothing: programs of your own read the NATS bus through it",
                       calls_others=False)
#: The live dashboard (issue 28: `msshop up --ui`, `msshop ui`): a page for the room, fed by
#: the services' /health; no part of the shop (no data, in no catalogue of services), in a
#: stage after every service's.
DASHBOARD = ServiceSpec("ui", 3, 8, "msshop.runtime.services.dashboard:create_app",
                        "nothing: the live dashboard of the sandbox", loopback_only=True)
#: the parts that keep no data (their directory exists, for the isolation rule, but no file)
KEEPS_NO_DATA = frozenset({BUS_DOOR.name, DASHBOARD.name})
#: every part a forked msshop process may run: the services, the bus's door, the dashboard
PARTS: dict[str, ServiceSpec] = {**BY_NAME, BUS_DOOR.name: BUS_DOOR,
                                 DASHBOARD.name: DASHBOARD}


def stages() -> list[list[ServiceSpec]]:
    """The parts grouped by stage, in start order."""
    ordered = sorted({s.stage for s in PARTS.values()})
    return [[s for s in PARTS.values() if s.stage == stage] for stage in ordered]


def keeps_doors_of(part: str) -> str:
    """Whose links a part's doors are: the bus's door keeps the link to the bus."""
    return BUS if part == BUS_DOOR.name else part
