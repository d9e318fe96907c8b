"""What a service process is told about its world when it starts."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msshop.contracts.credentials import bearer
from msshop.runtime.platform.checkpoint import Checkpointer
from msshop.runtime.platform.db import guard_connection, open_database, table_counts
from msshop.runtime.platform.links import LinkedBus, Links
from msshop.runtime.platform.tracing import SpanScope, Tracer, db_attributes

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
    timeouts: dict[str, float] = field(default_factory=dict)  # per dependency
    # Secrets, from the supervisor at fork (see msshop.contracts.credentials):
    admin: str | None = None  # the digest of the sandbox's token: checks its owner's calls
    credential: str | None = None  # this service's own, shown to the bus
    senders: dict[str, str] = field(default_factory=dict)  # bus only: digest -> service
    bus_address: NatsAddress | None = None  # the nats bus (None: the sandbox's own log)
    tracer: Tracer = field(init=False, compare=False)
    # faults on this service's calls (POST /chaos with `to`): its Peers and bus act on them
    links: Links = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tracer", Tracer(self.name))
        object.__setattr__(self, "links", Links(self.name))

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
        from msshop.bus.interface import BusUnavailable
        from msshop.bus.log import LogBus
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

        return LinkedBus(LogBus(exchange), self.links)


class StartupFailed(Exception):
    """A resource cannot start; the message says why and what to do (the supervisor quotes
    it when it reports the service failed to start)."""


class Database:
    """The service's own file: opened when the app starts (in the service's process, after
    the fork), guarded against ATTACHing anyone else's, closed when it stops."""

    def __init__(self, ctx: ServiceContext, migrations: list[str], tables: list[str]) -> None:
        self.ctx = ctx
        self.migrations = migrations
        self.tables = tables
        self.file_name = ctx.db_path.name
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: Checkpointer | None = None  # the WAL copied aside: checkpoint.py

    async def start(self) -> None:
        path = self.ctx.db_path
        try:
            conn = open_database(path, self.migrations)
            # the checkpointer's own connection (checkpoint.py), used by its thread only
            own = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.DatabaseError as exc:  # not a database, damaged, truncated, locked
            raise StartupFailed(
                f"{self.ctx.name} cannot open its database {path}: {exc}; if the file is "
                "damaged, move it away and start again (an empty one is made; its data is "
                "lost), or put back a copy") from None
        except OSError as exc:
            raise StartupFailed(f"{self.ctx.name} cannot open its database {path}: "
                                f"{exc.strerror}") from None
        guard_connection(self.ctx.name, conn, path)
        guard_connection(self.ctx.name, own, path)
        self._checkpointer = Checkpointer(conn, own, self.ctx.name)
        self._checkpointer.start()
        self._conn = conn

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "the database opens when the app starts"
        return self._conn

    def health(self) -> dict[str, Any]:
        return {"db": str(self.ctx.db_path), "rows": table_counts(self.conn, self.tables)}

    def span(self, operation: str, table: str, keys: Any = None) -> SpanScope:
        """A span for one statement on this file; set span["attributes"]["msshop.rows"]."""
        attributes = db_attributes(self.file_name, operation, table)
        if keys is not None:
            attributes["msshop.keys"] = keys
        return self.ctx.tracer.span(f"{operation} {table}", **attributes)
