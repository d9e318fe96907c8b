"""user-orders from the read model: one file, the query service's own, and nobody else.

One statement of two indexed reads answers it: the user's row, then their orders (stored
clustered by user, each with its product's title already copied in: see projection.py).
Every row also stores the bus position of the event that last wrote it, so the same reads name the
answer's sources (type, service, position) without asking anyone.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from msshop.contracts.answers import Buyer, OrderLine, order_line

# One statement for the user and their orders: each statement costs ~18 µs in the running
# service (a read transaction on the WAL, with cold caches between requests) against 5 µs
# in a tight loop, so two statements were a tenth of the answer's time. Kind 0 is the user,
# kind 1 an order; each row is one shape, so nothing is repeated per order.
READ = """
SELECT 0, id, NULL, name, email, NULL, position, NULL, NULL, NULL, NULL
FROM users_replica WHERE id = ?1
UNION ALL
SELECT 1, id, product_id, title, quantity, unit_price_cents, position, product_version,
       status, reason, version
FROM orders_replica WHERE user_id = ?1
"""
# the event that last wrote an order's row, by its version and status (projection.py)
ENDED = {"confirmed": "OrderConfirmed", "rejected": "OrderRejected"}


def user_orders(conn: sqlite3.Connection, user_id: int, most_named: int
                ) -> tuple[Buyer | None, list[OrderLine], dict[str, Any]]:
    """(user or None, orders with product details, where the rows came from).

    A product whose event has not arrived yet comes back with title None."""
    rows = rows_of(conn, user_id)
    user, orders = answer_of(rows)
    if user is None:
        return None, [], {}
    return user, orders, sources(rows[0][6], rows[1:], most_named)


def rows_of(conn: sqlite3.Connection, user_id: int) -> list[tuple[Any, ...]]:
    """The user's row, then their orders' rows (READ), in that order."""
    rows = conn.execute(READ, (user_id,)).fetchall()
    # the user first, then orders by id: the order SQLite returns them in, which compound
    # SELECTs do not promise, so sort (one pass over rows already in order)
    rows.sort()
    return rows


def answer_of(rows: list[tuple[Any, ...]]) -> tuple[Buyer | None, list[OrderLine]]:
    """The user and their orders from rows_of (None and [] if there is no such user)."""
    if not rows or rows[0][0] != 0:
        return None, []
    head = rows[0]
    user: Buyer = {"id": head[1], "name": head[3], "email": head[4]}
    return user, [order_line(r[1], r[2], r[3], r[4], r[5], r[8], r[9]) for r in rows[1:]]


def sources(user_position: int, rows: list[tuple[Any, ...]], most_named: int
            ) -> dict[str, Any]:
    """The events behind an answer: how many of each kind, and the first few by position.

    Bounded on purpose (spans stay in memory; a user may have thousands of orders) and
    cheap: this is on the hot path, so only C-level passes over rows already fetched."""
    # a title is copied with its product's version: none yet, the product is not seen yet
    versions = list({r[2]: r[7] for r in rows if r[3] is not None}.values())
    created = versions.count(1)
    # a saga's order once it ended: its row was last written by its outcome (version 2)
    ended = [r[8] for r in rows if r[10] != 1]
    confirmed, rejected = ended.count("confirmed"), ended.count("rejected")
    named = [("UserSignedUp", "users", user_position),
             *[("OrderPlaced" if r[10] == 1 else ENDED.get(r[8], "OrderPlaced"), "orders",
                r[6]) for r in rows[:most_named - 1]]]
    kinds = {"UserSignedUp": 1, "OrderPlaced": len(rows) - confirmed - rejected,
             "OrderConfirmed": confirmed, "OrderRejected": rejected,
             "ProductCreated": created, "ProductUpdated": len(versions) - created}
    return {"count": 1 + len(rows) + len(versions), "named": named,
            "kinds": {kind: n for kind, n in kinds.items() if n}}
