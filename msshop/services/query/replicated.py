"""user-orders from the read model: one file, the query service's own, and nobody else.

Every row stores the event that last wrote it, so the answer can name its sources (type,
service, bus position) without asking anyone: the same two indexed reads give both.
"""

from __future__ import annotations

import sqlite3
from typing import Any

USER = "SELECT id, name, email, position, event_id FROM users_replica WHERE id = ?"
ORDERS = """
SELECT o.id, o.product_id, p.title, o.quantity, o.unit_price_cents,
       o.position, o.event_id, p.position, p.event_id, p.version
FROM orders_replica AS o LEFT JOIN products_replica AS p ON p.id = o.product_id
WHERE o.user_id = ?
ORDER BY o.id
"""


def find_user(conn: sqlite3.Connection, user_id: int
              ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The user, and the event its row came from."""
    row = conn.execute(USER, (user_id,)).fetchone()
    if row is None:
        return None, None
    source = {"position": row[3], "id": row[4], "type": "UserSignedUp", "source": "users"}
    return {"id": row[0], "name": row[1], "email": row[2]}, source


def orders_of(conn: sqlite3.Connection, user_id: int
              ) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """The user's orders with product details, and the events the rows came from by position.

    A product whose event has not arrived yet comes back with title None."""
    orders = []
    sources: dict[int, dict[str, Any]] = {}
    for (oid, pid, title, qty, cents, o_pos, o_event, p_pos, p_event,
         p_version) in conn.execute(ORDERS, (user_id,)):
        orders.append({"order_id": oid, "product_id": pid, "title": title, "quantity": qty,
                       "unit_price": cents / 100, "total": qty * cents / 100})
        sources[o_pos] = {"position": o_pos, "id": o_event, "type": "OrderPlaced",
                          "source": "orders"}
        if p_pos is not None and p_pos not in sources:
            sources[p_pos] = {"position": p_pos, "id": p_event, "source": "products",
                              "type": "ProductCreated" if p_version == 1 else "ProductUpdated"}
    return orders, sources
