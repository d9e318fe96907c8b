"""A service's own SQLite file: one long-lived connection, WAL, migrations; the Database a
service holds (opened at start, guarded: isolation.py, checkpointed: checkpoint.py).

Why one connection: reconnecting costs 0.14-0.7 ms here, more than the query. Why
`isolation_level=None`: we open write transactions ourselves with BEGIN IMMEDIATE, so a
writer takes the lock up front instead of failing half-way on an upgrade.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msshop.runtime.platform.checkpoint import Checkpointer, wal_bytes
from msshop.runtime.platform.integrity import (
    START_BUDGET,
    damage_message,
    is_damage,
    quick_check,
    way_out,
)
from msshop.runtime.platform.isolation import guard_connection
from msshop.runtime.platform.tracing import SpanScope, db_attributes

if TYPE_CHECKING:
    from msshop.runtime.platform.context import ServiceContext
    from msshop.runtime.platform.tasks import Tasks

log = logging.getLogger("msshop.db")


def open_database(path: Path, migrations: Sequence[str]) -> sqlite3.Connection:
    """Open (creating if needed) the service's file and bring its schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           cached_statements=256)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    # Up to 64 MiB of pages cached (the default is 2 MiB): a read model bigger than the cache
    # spills and rereads its pages; measured, a rebuild ran 10-20% faster with it.
    conn.execute("PRAGMA cache_size=-65536")
    migrate(conn, migrations)
    return conn


def migrate(conn: sqlite3.Connection, migrations: Sequence[str]) -> None:
    """Apply the migrations the file has not seen yet; PRAGMA user_version counts them."""
    (current,) = conn.execute("PRAGMA user_version").fetchone()
    for number, script in enumerate(migrations[current:], start=current + 1):
        with transaction(conn):
            for statement in statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")


def statements(script: str) -> list[str]:
    """The statements of a script of plain DDL/DML (no semicolons inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the write lock at once and rolls back on any error,
    the COMMIT's own included: a COMMIT refused (a full disk, SQLITE_BUSY) may leave the
    transaction open, and every later BEGIN on the connection would fail."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled it back already (SQLITE_FULL may)
            conn.execute("ROLLBACK")
        raise


def table_counts(conn: sqlite3.Connection, tables: Sequence[str]) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


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
            self.check(path)
            conn = open_database(path, self.migrations)
            # the checkpointer's own connection (checkpoint.py), used by its thread only
            own = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.DatabaseError as exc:  # not a database, damaged, truncated, locked
            if is_damage(exc, strictly=True):  # a SQLite file, with pages that are not
                raise StartupFailed(damage_message(self.ctx.name, path, str(exc))) from None
            # not one at all (damaged, or another file put there), truncated, locked
            raise StartupFailed(
                f"{self.ctx.name} cannot open its database {path}: {exc}; if the file is "
                f"damaged, {way_out(self.ctx.name, path)}") from None
        except OSError as exc:
            raise StartupFailed(f"{self.ctx.name} cannot open its database {path}: "
                                f"{exc.strerror}") from None
        guard_connection(self.ctx.name, conn, path)
        guard_connection(self.ctx.name, own, path)
        self._checkpointer = Checkpointer(conn, own, self.ctx.name, tasks=self.ctx.tasks)
        self._checkpointer.start()
        self._conn = conn

    def check(self, path: Path) -> None:
        """A damaged file is refused before anything reads it (a service that started on
        one would fail later, at some request, with no word of the way out): quick_check,
        within a time budget (integrity.py says why, and what it costs)."""
        if not path.exists():
            return  # a new sandbox: the file is made now
        checked = quick_check(path, START_BUDGET)
        if checked.problem is not None:
            raise StartupFailed(damage_message(self.ctx.name, path, checked.problem))
        if not checked.complete:
            log.warning("%s: the check of %s stopped after %.1f s (%d MB); the rest is "
                        "checked by reading it, or at once with: msshop check %s",
                        self.ctx.name, path, checked.seconds, path.stat().st_size >> 20,
                        self.ctx.name)

    def damaged(self, exc: BaseException) -> str | None:
        """If `exc` says this file is damaged: one line naming it and the way out (the
        router answers a request that met it so, not with a traceback)."""
        if not is_damage(exc):
            return None
        return f"{self.ctx.name}: " + damage_message(self.ctx.name, self.ctx.db_path, str(exc),
                                                    running=True)

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

    @property
    def path(self) -> Path:
        """The service's file (a refused write names it: routing.py)."""
        return self.ctx.db_path

    @property
    def tasks(self) -> Tasks:
        """The process's supervised background work, the checkpointer among it (app.py
        finds it here)."""
        return self.ctx.tasks

    def health(self) -> dict[str, Any]:
        return {"db": str(self.ctx.db_path), "rows": table_counts(self.conn, self.tables),
                "wal_bytes": wal_bytes(self.ctx.db_path)}

    def span(self, operation: str, table: str, keys: Any = None) -> SpanScope:
        """A span for one statement on this file; set span["attributes"]["msshop.rows"]."""
        attributes = db_attributes(self.file_name, operation, table)
        if keys is not None:
            attributes["msshop.keys"] = keys
        return self.ctx.tracer.span(f"{operation} {table}", **attributes)
