"""`msshop inspect`: look into each service's own SQLite file, read-only — its tables, their
rows, bytes and schemas, the first rows of one table — and at what replication costs in
space (the read model against what it copies, the bus's log, the outboxes).

The operator looking, not a service. No service opens another's file (the isolation guard
refuses it); like the monolith's join (monolith.py), the CLI does, and only to read:
every file is opened with SQLite's `mode=ro`, so inspecting never writes, never takes a
write lock and never creates a file, whether the sandbox runs or not (its files stay
after `msshop down`). The paths are the supervisor's own (contracts/topology.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from msshop.contracts.config import Settings
from msshop.contracts.errors import InvalidArgument, SandboxError, UsageError
from msshop.contracts.inspection import (
    MAX_ROW_LIMIT,
    Cell,
    Column,
    DatabaseInfo,
    Inspection,
    ReplicaCost,
    ReplicationCost,
    TableInfo,
    TableRows,
)
from msshop.contracts.topology import BY_NAME, NAMES, SERVICES
from msshop.runtime.orchestrator.layout import refuse_old_layout
from msshop.runtime.orchestrator.state import SandboxPaths, is_running, read_state
from msshop.runtime.platform.integrity import is_damage, way_out

if TYPE_CHECKING:
    from sqlite_utils import Database

# The read model in query.db, and the table in another service that each one copies.
REPLICATED: dict[str, tuple[str, str]] = {
    "users_replica": ("users", "users"),
    "products_replica": ("products", "products"),
    "orders_replica": ("orders", "orders"),
}
BUS_LOG = ("bus", "events")  # the log bus's events (with --bus nats there is no bus.db)
OUTBOX = "outbox"  # kept by every service that publishes, in its own file
START_ONE = "start one with: msshop up --detach"
NO_DBSTAT = "this Python's SQLite has no dbstat table: bytes per table are unavailable"


class Unreadable(Exception):
    """A file that cannot be read without writing (or is not a database): why, in words."""


def inspect(settings: Settings, service: str | None = None) -> Inspection:
    """Every service's database (or `service`'s): sizes, tables, rows, schemas; with all of
    them, what replication costs in space."""
    paths = SandboxPaths(settings.sandbox_dir)
    names = [_known(service)] if service is not None else list(NAMES)
    _require_data(paths)
    refuse_old_layout(paths.root, "inspect")
    backend, dbstat, running = bus_backend(paths), has_dbstat(), is_running(paths)
    databases = [_database(paths.root, name, backend, dbstat) for name in names]
    if not any(info["exists"] for info in databases):
        if service is None:
            raise SandboxError(f"no database in {paths.data} yet; {START_ONE}")
        if backend_note(backend, names) is None:  # else: `inspect bus` on nats says why
            raise SandboxError(f"{service} has no database yet ({databases[0]['path']}); "
                               f"{START_ONE}")
    return {
        "sandbox": str(paths.root), "running": running, "bus": backend,
        "dbstat": dbstat, "databases": databases,
        "replication": (_replication({info["service"]: info for info in databases}, backend,
                                     dbstat) if service is None else None),
    }


def table_rows(settings: Settings, service: str, table: str, limit: int) -> TableRows:
    """The first `limit` rows of `service`'s table `table`, in the table's own order."""
    _known(service)
    if not 1 <= limit <= MAX_ROW_LIMIT:
        raise InvalidArgument(f"{{limit}} {limit} is out of range; choose 1 to "
                              f"{MAX_ROW_LIMIT}", "limit")
    paths = SandboxPaths(settings.sandbox_dir)
    _require_data(paths)
    path = BY_NAME[service].db_path(paths.root)
    if not path.exists():
        why = backend_note(bus_backend(paths), [service])
        raise SandboxError(why or f"{service} has no database yet ({path}); {START_ONE}")
    try:
        with opened(path) as (db, _):
            tables = db.table_names()
            if table not in tables:
                raise UsageError(f"{service} has no table {table!r}; its tables are: "
                                 + ", ".join(tables))
            found = db.table(table)
            columns: list[Column] = [{"name": c.name, "type": c.type} for c in found.columns]
            rows = [{name: cell(value) for name, value in row.items()}
                    for row in found.rows_where(limit=limit)]
            total = found.count
    except (Unreadable, sqlite3.Error) as exc:
        raise SandboxError(f"cannot read {path}: {exc}") from None
    return {"sandbox": str(paths.root), "service": service, "path": str(path),
            "table": table, "columns": columns, "rows": rows, "total_rows": total,
            "limit": limit}


def bus_backend(paths: SandboxPaths) -> str:
    """What carries this sandbox's events: the state file says while it runs (or after a
    crash); after `down`, a nats store and no bus.db mean NATS JetStream."""
    try:
        state = read_state(paths)
    except SandboxError:  # a damaged state file: the databases can still be looked at
        state = None
    if state is not None:
        return state.bus.backend
    bus_db = BY_NAME["bus"].db_path(paths.root)
    return "nats" if (paths.data / "nats").is_dir() and not bus_db.exists() else "log"


def backend_note(backend: str, names: Iterable[str]) -> str | None:
    """Why there is no bus.db, when that is as it should be (the bus is a nats-server)."""
    if backend == "nats" and "bus" in names:
        return ("the bus is NATS JetStream here: there is no bus.db; its events are in "
                "JetStream's own store (data/nats/, or the external server's)")
    return None


def has_dbstat() -> bool:
    """Whether this Python's SQLite was built with the dbstat table (bytes per b-tree)."""
    with closing(sqlite3.connect(":memory:")) as conn:
        try:
            conn.execute("SELECT name FROM dbstat LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            return False
    return True


def read_only_uri(path: Path) -> str:
    """How to open `path` so that reading it writes nothing and creates nothing.

    A WAL database's readers share the -shm (the WAL's index) with its writer: while the
    service runs, -wal and -shm exist and `mode=ro` reads the newest commits. A file closed
    cleanly (the service stopped) has neither, and `mode=ro` would create both to read
    it; but then the file holds every commit, and `immutable=1` reads it without them."""
    wal, shm = _beside(path, "-wal"), _beside(path, "-shm")
    uri = f"file:{quote(str(path))}?mode=ro"
    if wal.exists() and shm.exists():
        return uri
    if not wal.exists() or wal.stat().st_size == 0:
        return uri + "&immutable=1"
    raise Unreadable(f"{wal.name} holds commits not yet in the file and there is no "
                     f"{shm.name}: reading them would create it; start the sandbox "
                     "(msshop up --detach) and look again")


@contextmanager
def opened(path: Path) -> Iterator[tuple[Database, str]]:
    """`path` read-only through sqlite-utils, in one read transaction (the counts and the
    sizes are of one moment), and how it was opened."""
    from sqlite_utils import Database  # ~60 ms to import: only this command pays for it

    uri = read_only_uri(path)
    how = "read-only, immutable" if uri.endswith("immutable=1") else "read-only"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        conn.execute("BEGIN")  # deferred: a read transaction, never the write lock
        try:
            # no pragmas of its own, no plugins: nothing but our reads on this connection
            yield Database(conn, recursive_triggers=False, execute_plugins=False), how
        finally:
            conn.rollback()


def cell(value: Any) -> Cell:
    """A value as JSON can carry it: a BLOB as its text if it is UTF-8, else x'<hex>'."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return f"x'{value.hex()}'"
    if value is None or isinstance(value, int | float | str):
        return value
    return str(value)


# --- one database ----------------------------------------------------------------------------


def _database(root: Path, service: str, backend: str, dbstat: bool) -> DatabaseInfo:
    path = BY_NAME[service].db_path(root)
    info: DatabaseInfo = {
        "service": service, "path": str(path), "exists": path.exists(), "bytes": 0,
        "db_bytes": 0, "wal_bytes": 0, "page_size": None, "pages": None, "opened": None,
        "tables": [], "note": None,
    }
    if not info["exists"]:
        info["note"] = backend_note(backend, [service]) or f"no database yet; {START_ONE}"
        return info
    if service == "bus" and backend == "nats":
        info["note"] = "left by an earlier run on msshop's log: this sandbox's bus is NATS " \
                       "JetStream"
    try:
        with opened(path) as (db, how):
            info["opened"] = how
            (info["page_size"],) = db.execute("PRAGMA page_size").fetchone()
            (info["pages"],) = db.execute("PRAGMA page_count").fetchone()
            info["tables"] = _tables(db, _btree_bytes(db) if dbstat else None)
    except (Unreadable, sqlite3.Error) as exc:
        info["note"] = f"cannot be read: {exc}" + (
            f"; {way_out(service, path)}" if is_damage(exc) else "")
    # after the read: the -wal may have grown meanwhile, and these are sizes on disk now
    info["db_bytes"] = _size(path)
    info["wal_bytes"] = _size(_beside(path, "-wal"))
    info["bytes"] = info["db_bytes"] + info["wal_bytes"]
    return info


def _tables(db: Database, btrees: dict[str, int] | None) -> list[TableInfo]:
    """Every table (the outbox, the consumer's position, SQLite's own too): rows, bytes
    (its b-tree and its indexes'), its indexes and its CREATE TABLE."""
    found: list[TableInfo] = []
    for name in db.table_names():
        table = db.table(name)
        # sqlite_master, not PRAGMA index_list: a WITHOUT ROWID table's primary key is the
        # table's own b-tree, not an index that takes space of its own
        indexes = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "ORDER BY rowid", (name,))]
        own_bytes = index_bytes = None
        if btrees is not None:
            index_bytes = sum(btrees.get(index, 0) for index in indexes)
            own_bytes = btrees.get(name, 0) + index_bytes
        found.append({"name": name, "rows": table.count, "bytes": own_bytes,
                      "index_bytes": index_bytes, "indexes": indexes,
                      "schema": table.schema})
    return found


def _btree_bytes(db: Database) -> dict[str, int]:
    """Bytes of pages each table and index uses (dbstat: every page, the WAL's newest)."""
    return {name: int(size) for name, size in
            db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")}


# --- what replication costs ------------------------------------------------------------------


def _replication(databases: dict[str, DatabaseInfo], backend: str,
                 dbstat: bool) -> ReplicationCost:
    def table_bytes(service: str, table: str) -> int | None:
        info = databases.get(service)
        tables = {t["name"]: t for t in info["tables"]} if info is not None else {}
        return tables[table]["bytes"] if table in tables else None

    pairs: list[ReplicaCost] = []
    for replica, (service, table) in REPLICATED.items():
        replica_bytes, source_bytes = table_bytes("query", replica), table_bytes(service, table)
        pairs.append({"replica": replica, "source": f"{service}.{table}",
                      "replica_bytes": replica_bytes, "source_bytes": source_bytes,
                      "ratio": _ratio(replica_bytes, source_bytes)})
    read_model = _total(p["replica_bytes"] for p in pairs)
    sources = _total(p["source_bytes"] for p in pairs)
    bus_log = table_bytes(*BUS_LOG) if backend == "log" else None
    outboxes = _total(table_bytes(spec.name, OUTBOX) for spec in SERVICES if spec.publishes)
    notes = []
    if not dbstat:
        notes.append(NO_DBSTAT)
    else:
        if read_model is None or sources is None or outboxes is None:
            notes.append("some tables are not there yet (a service never started?)")
        if backend == "nats":
            notes.append("the bus's log is in JetStream's store, not in a table")
        elif bus_log is None:
            notes.append("bus.db has no events table yet")
    return {"read_model_bytes": read_model, "source_bytes": sources,
            "ratio": _ratio(read_model, sources), "tables": pairs, "bus_log_bytes": bus_log,
            "outbox_bytes": outboxes, "note": "; ".join(notes) or None}


# --- small helpers ---------------------------------------------------------------------------


def _known(service: str) -> str:
    if service not in BY_NAME:
        raise UsageError(f"unknown service {service!r}; choose one of: " + ", ".join(NAMES))
    return service


def _require_data(paths: SandboxPaths) -> None:
    if not paths.data.is_dir():
        raise SandboxError(f"no sandbox in {paths.root} (no data/ there); {START_ONE}")


def _beside(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _ratio(part: int | None, whole: int | None) -> float | None:
    return None if part is None or not whole else part / whole


def _total(values: Iterable[int | None]) -> int | None:
    """The sum, or None if any figure is missing (a partial sum would mislead)."""
    total = 0
    for value in values:
        if value is None:
            return None
        total += value
    return total
