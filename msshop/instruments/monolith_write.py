"""The monolith's purchase: take the stock, take the credit and write the order with its
OrderPlaced event in ONE SQLite transaction over the three services' files.

This BREAKS ENCAPSULATION on purpose, like the monolith's read (monolith.py): no service
may open another's file; the CLI does, to show the reference a monolith gives for free —
the invariant kept by one transaction, with no call that can fail half-way. Its limits are
SQLite's: the files are in WAL mode, where a transaction over ATTACHed files is atomic in
each file but, if the machine (not the process) dies during the COMMIT, one file may have
it and another not. The orders relay finds the outbox row within its poll (one second):
no commit in its own process woke it.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from msshop.contracts import events
from msshop.contracts.errors import SandboxError
from msshop.contracts.ledgers import CREDIT, STOCK
from msshop.contracts.shop import Order, OrderStatus
from msshop.runtime.platform import ledger
from msshop.runtime.platform.outbox import add_events

LABEL = "monolith (reference only: the CLI writes every service's database in one " \
        "transaction, which breaks encapsulation)"
BUSY_MS = 5000  # the services hold their files open and write them: wait for their locks


@dataclass(frozen=True)
class Written:
    """The purchase: the order (None when refused), whether it is new, or the refusal."""

    order: Order | None
    created: bool
    status: int = 200  # a refusal's HTTP-like status: 409 not enough, 422 no such id
    reason: str | None = None


def buy(databases: dict[str, Path], user_id: int, product_id: int, quantity: int,
        request_id: str | None = None) -> Written:
    """One transaction: a request_id already recorded answers its order; a refusal leaves
    every file as it was."""
    for name, path in databases.items():
        if not path.exists():
            raise SandboxError(f"{name}'s database {path} does not exist yet; "
                               "start the sandbox with: msshop up --detach")
    with connected(databases) as conn:
        return buy_on(conn, user_id, product_id, quantity, request_id)


@contextmanager
def connected(databases: dict[str, Path]) -> Iterator[sqlite3.Connection]:
    """The monolith's one connection over the three files (orders' the main one), kept
    for many purchases as a monolith keeps its connection (the bench's monolith row)."""
    try:
        with closing(sqlite3.connect(databases["orders"], isolation_level=None,
                                     timeout=BUSY_MS / 1000)) as conn:
            conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
            for name in ("users", "products"):
                conn.execute(f"ATTACH DATABASE ? AS {name}",
                             (f"file:{quote(str(databases[name]))}?mode=rw",))
            yield conn
    except sqlite3.OperationalError as exc:  # a file locked too long, or not to be opened
        raise SandboxError(f"the monolith's purchase could not write the services' files "
                           f"({exc}); nothing was written; see: msshop status") from None


def buy_on(conn: sqlite3.Connection, user_id: int, product_id: int, quantity: int,
           request_id: str | None = None) -> Written:
    """One purchase in one transaction on a `connected` connection."""
    key = request_id or f"monolith-{uuid.uuid4().hex}"
    return _in_one_transaction(conn, user_id, product_id, quantity, key)


def _in_one_transaction(conn: sqlite3.Connection, user_id: int, product_id: int,
                        quantity: int, key: str) -> Written:
    conn.execute("BEGIN IMMEDIATE")  # every attached file's write lock, up front
    try:
        written = _purchase(conn, user_id, product_id, quantity, key)
        conn.execute("COMMIT" if written.order is not None else "ROLLBACK")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return written


def _purchase(conn: sqlite3.Connection, user_id: int, product_id: int, quantity: int,
              key: str) -> Written:
    known = conn.execute(f"SELECT {ORDER_COLUMNS} FROM main.orders WHERE request_id = ?",
                         (key,)).fetchone()
    if known is not None:
        return Written(_order(known), created=False)
    price = conn.execute("SELECT price_cents FROM products.products WHERE id = ?",
                         (product_id,)).fetchone()
    stock, = ledger.take(conn, STOCK.in_schema("products"), [
        ledger.Take(key, product_id, quantity)])
    if not stock.taken:
        return Written(None, False, stock.status, stock.reason)
    assert price is not None  # taken: the product exists
    credit, = ledger.take(conn, CREDIT.in_schema("users"), [
        ledger.Take(key, user_id, quantity * price[0])])
    if not credit.taken:
        return Written(None, False, credit.status, credit.reason)
    now = time.time()
    order_id = conn.execute(
        "INSERT INTO main.orders (user_id, product_id, quantity, unit_price_cents, "
        "request_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (user_id, product_id, quantity, price[0], key, now)).lastrowid or 0
    add_events(conn, [events.order_placed(order_id, user_id, product_id, quantity, price[0],
                                          now, purchase=key)], table="main.outbox")
    row = conn.execute(f"SELECT {ORDER_COLUMNS} FROM main.orders WHERE id = ?",
                       (order_id,)).fetchone()
    return Written(_order(row), created=True)


ORDER_COLUMNS = "id, user_id, product_id, quantity, unit_price_cents, request_id, created_at"


def _order(row: tuple[int, int, int, int, int, str, float]) -> Order:
    return {"id": row[0], "user_id": row[1], "product_id": row[2], "quantity": row[3],
            "unit_price": row[4] / 100, "total": row[3] * row[4] / 100,
            "request_id": row[5], "created_at": row[6], "status": OrderStatus.CONFIRMED,
            "reason": None, "event": None}
