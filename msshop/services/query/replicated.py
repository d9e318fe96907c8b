"""user-orders from the read model: one file, the query service's own, and nobody else.

Two indexed reads answer it: the user's row, then their orders (stored clustered by user,
each with its product's title already copied in: see projection.py). Every row also
stores the bus position of the event that last wrote it, so the same reads name the
answer's sources (type, service, position) without asking anyone.
"""

from __future__ import annotations

import sqlite3
from typing import Any

USER = "SELECT id, name, email, position FROM users_replica WHERE id = ?"
ORDERS = """
SELECT id, product_id, title, quantity, unit_price_cents, position, product_position,
       product_version
FROM orders_replica WHERE user_id = ? ORDER BY user_id, id
"""


def user_orders(conn: sqlite3.Connection, user_id: int, most_named: int
                ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any]]:
    """(user or None, orders with product details, where the rows came from).

    A product whose event has not arrived yet comes back with title None."""
    head = conn.execute(USER, (user_id,)).fetchone()
    if head is None:
        return None, [], {}
    rows = conn.execute(ORDERS, (user_id,)).fetchall()
    user = {"id": head[0], "name": head[1], "email": head[2]}
    orders = [{"order_id": r[0], "product_id": r[1], "title": r[2], "quantity": r[3],
               "unit_price": r[4] / 100, "total": r[3] * r[4] / 100} for r in rows]
    return user, orders, sources(head[3], rows, most_named)


def sources(user_position: int, rows: list[tuple[Any, ...]], most_named: int
            ) -> dict[str, Any]:
    """The events behind an answer: how many of each kind, and the first few by position.

    Bounded on purpose (spans stay in memory; a user may have thousands of orders) and
    cheap: this is on the hot path, so only C-level passes over rows already fetched."""
    versions = list({r[1]: r[7] for r in rows if r[6] is not None}.values())
    created = versions.count(1)
    named = [("UserSignedUp", "users", user_position),
             *[("OrderPlaced", "orders", r[5]) for r in rows[:most_named - 1]]]
    kinds = {"UserSignedUp": 1, "OrderPlaced": len(rows), "ProductCreated": created,
             "ProductUpdated": len(versions) - created}
    return {"count": 1 + len(rows) + len(versions), "named": named,
            "kinds": {kind: n for kind, n in kinds.items() if n}}
