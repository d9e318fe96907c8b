"""The sagas orders has not ended, of both kinds: counted for /health (the dashboard asks
it four times a second) and listed, the oldest first, for GET /sagas (issue 28).

Both read the partial index `orders_pending`, which holds the pending orders alone, so a
look costs what is in flight, not what the file holds. An orchestrated saga's order stays
pending until its row of `sagas` ends, in the same transaction: the pending orders are
every saga in flight, and the LEFT JOIN tells the two kinds apart.
"""

from __future__ import annotations

import sqlite3

from msshop.contracts.saga_progress import InFlightSaga, SagasInFlight
from msshop.contracts.sagas import UNFINISHED_SQL
from msshop.contracts.shop import OrderStatus
from msshop.contracts.status import InFlight
from msshop.contracts.strategies import WriteStrategy

_ORCHESTRATED, _CHOREOGRAPHED = WriteStrategy.SAGA_ORCHESTRATED.value, WriteStrategy.SAGA.value
_PENDING = f"status = '{OrderStatus.PENDING}'"
_LISTED = f"""
SELECT o.id, o.request_id, o.user_id, o.product_id, o.quantity, o.created_at,
       s.state, s.deadline, s.reason
FROM orders AS o INDEXED BY orders_pending LEFT JOIN sagas AS s ON s.order_id = o.id
WHERE o.{_PENDING} ORDER BY o.id LIMIT ?
"""


def _pending(conn: sqlite3.Connection) -> int:
    """Every saga in flight, of both kinds."""
    count: int = conn.execute(
        f"SELECT count(*) FROM orders INDEXED BY orders_pending WHERE {_PENDING}").fetchone()[0]
    return count


def counted(conn: sqlite3.Connection) -> InFlight:
    """How many of each kind; the orchestrated ones by their state."""
    pending = _pending(conn)
    states = dict(conn.execute(
        "SELECT state, count(*) FROM sagas INDEXED BY sagas_unfinished "
        f"WHERE {UNFINISHED_SQL} GROUP BY state").fetchall())
    return {"saga": pending - sum(states.values()), "saga_orchestrated": states}


def listed(conn: sqlite3.Connection, limit: int) -> SagasInFlight:
    """How many, and the oldest `limit` of them."""
    sagas = [
        InFlightSaga(order_id, request_id or "", user_id, product_id, quantity,
                     _ORCHESTRATED if state else _CHOREOGRAPHED, created_at,
                     state or OrderStatus.PENDING.value, deadline, reason)
        for (order_id, request_id, user_id, product_id, quantity, created_at, state,
             deadline, reason) in conn.execute(_LISTED, (limit,))]
    return SagasInFlight(_pending(conn), sagas)
