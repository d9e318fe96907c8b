"""What `msshop inspect` finds in the services' own SQLite files, read-only: per database
its path, size and tables (rows, bytes, schema); what replication costs in space; and the
first rows of one table. The instrument (instruments/inspection.py) fills these, render
shows them, and `inspect --json` prints them as they are.

The operator looking, not a service: no service opens another's file (the isolation
guard), and these documents are read by the CLI, which opens every file read-only.
"""

# No `from __future__ import annotations` here, like the other contracts: a TypedDict with
# string annotations compiles each one as it is defined.
from typing import TypedDict

DEFAULT_ROW_LIMIT = 10  # `inspect SERVICE --table T` without --limit
MAX_ROW_LIMIT = 1000  # rows one `--table` look prints at most

#: A cell as JSON can carry it: a BLOB is its text when it is UTF-8 (the events' bodies are
#: JSON), else an SQL literal x'<hex>'; the column's declared type says which it was.
Cell = int | float | str | None


class TableInfo(TypedDict):
    """One table of a database: how many rows, how much space, how it is declared."""

    name: str
    rows: int
    bytes: int | None  # the pages of the table and of its indexes; None: no dbstat here
    index_bytes: int | None  # of those, the indexes'
    indexes: list[str]  # the indexes on it, SQLite's own (sqlite_autoindex_…) included
    schema: str  # its CREATE TABLE statement, as SQLite keeps it


class DatabaseInfo(TypedDict):
    """One service's own file. `exists` false (or `note` set): there is nothing to read,
    and `note` says why (not created yet; the bus is a nats-server; it cannot be read)."""

    service: str
    path: str
    exists: bool
    bytes: int  # db_bytes + wal_bytes: what the file takes on disk now
    db_bytes: int
    wal_bytes: int  # committed pages not yet copied into the file (WAL mode)
    page_size: int | None
    pages: int | None  # pages in the database, tables, indexes and free ones
    opened: str | None  # how it was read: "read-only", or "read-only, immutable" when down
    tables: list[TableInfo]
    note: str | None


class ReplicaCost(TypedDict):
    """One read-model table in query.db against the table it copies in another service."""

    replica: str  # e.g. "orders_replica"
    source: str  # "<service>.<table>", e.g. "orders.orders"
    replica_bytes: int | None
    source_bytes: int | None
    ratio: float | None  # replica_bytes / source_bytes; None: a figure is missing


class ReplicationCost(TypedDict):
    """What replication costs in space: the read model against what it copies, the bus's
    log, and the outboxes the writing services keep. Bytes are pages in use, indexes
    included; None where a figure cannot be had, and `note` says why."""

    read_model_bytes: int | None
    source_bytes: int | None
    ratio: float | None  # read_model_bytes / source_bytes
    tables: list[ReplicaCost]
    bus_log_bytes: int | None  # bus.db's events table; None on NATS JetStream
    outbox_bytes: int | None  # the outbox tables of users, products and orders together
    note: str | None


class Inspection(TypedDict):
    """`msshop inspect [SERVICE] --json`. `replication` only when every service was looked
    at (no SERVICE given); `dbstat` false: this Python's SQLite cannot say bytes per table."""

    sandbox: str
    running: bool
    bus: str  # "log" or "nats": what carries the events (so whether bus.db is the log)
    dbstat: bool
    databases: list[DatabaseInfo]
    replication: ReplicationCost | None


class Column(TypedDict):
    name: str
    type: str  # as declared in the schema ("" if none)


class TableRows(TypedDict):
    """`msshop inspect SERVICE --table T --json`: the first `limit` rows, in the table's own
    order (its rowid, or its primary key for a WITHOUT ROWID table)."""

    sandbox: str
    service: str
    path: str
    table: str
    columns: list[Column]
    rows: list[dict[str, Cell]]
    total_rows: int
    limit: int
