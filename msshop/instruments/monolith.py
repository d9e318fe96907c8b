"""The monolith's answer: ATTACH every service's database and run the one join.

This BREAKS ENCAPSULATION on purpose. No service may do this (the isolation guard refuses
it); the CLI does it, read-only, as the ground truth every strategy is checked against and
as the "before" picture of the lesson: in a monolith the question is one SQL join.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from msshop.contracts.answers import QUESTION, Buyer, OrderLine, UserOrders, order_line
from msshop.contracts.errors import SandboxError
from msshop.contracts.limits import MAX_ID
from msshop.contracts.strategies import ReadStrategy

LABEL = "monolith (reference only: the CLI opens every service's database, which breaks " \
        "encapsulation)"
# LEFT: a saga's order is written before products has looked at it, so one for a product
# that does not exist is there, rejected, with no title (issue 26)
JOIN = """
SELECT o.id, o.product_id, p.title, o.quantity, o.unit_price_cents, o.status, o.reason
FROM orders.orders AS o LEFT JOIN products.products AS p ON p.id = o.product_id
WHERE o.user_id = :user
ORDER BY o.id
"""
ALL_USERS_JOIN = """
SELECT o.user_id, o.id, o.product_id, p.title, o.quantity, o.unit_price_cents, o.status,
       o.reason
FROM orders.orders AS o LEFT JOIN products.products AS p ON p.id = o.product_id
ORDER BY o.user_id, o.id
"""


@dataclass(frozen=True)
class Touched:
    """What the join read: every service's file, how many rows, how long."""

    databases: dict[str, str]
    rows: int
    duration_ms: float


def _read_only_uri(path: Path) -> str:
    return f"file:{quote(str(path))}?mode=ro"


@contextmanager
def attached(databases: dict[str, Path]) -> Iterator[sqlite3.Connection]:
    """One in-memory connection with each service's file ATTACHed read-only by its name."""
    for name, path in databases.items():
        if not path.exists():
            raise SandboxError(f"{name}'s database {path} does not exist yet; "
                               "start the sandbox with: msshop up --detach")
    with closing(sqlite3.connect(":memory:", uri=True)) as conn:
        for name, path in databases.items():
            conn.execute(f"ATTACH DATABASE ? AS {name}", (_read_only_uri(path),))
        yield conn


def user_orders(databases: dict[str, Path], user_id: int) -> tuple[UserOrders, Touched]:
    """The answer, in the same shape the query service gives, and what the join touched."""
    if not 1 <= user_id <= MAX_ID:  # SQLite could not even bind it
        raise LookupError(f"no user with id {user_id}: ids are positive integers up to "
                          f"{MAX_ID}")
    started = time.perf_counter()
    with attached(databases) as conn:
        row = conn.execute("SELECT id, name, email FROM users.users WHERE id = ?",
                           (user_id,)).fetchone()
        if row is None:
            raise LookupError(f"no user with id {user_id}")
        orders = [order_line(*r) for r in conn.execute(JOIN, {"user": user_id})]
    answer: UserOrders = {
        "question": QUESTION, "strategy": ReadStrategy.MONOLITH, "label": LABEL,
        "user": {"id": row[0], "name": row[1], "email": row[2]}, "orders": orders,
        "freshness": {"live": True},
    }
    touched = Touched({name: str(path) for name, path in databases.items()}, 1 + len(orders),
                      (time.perf_counter() - started) * 1000)
    return answer, touched


def all_users(databases: dict[str, Path]) -> dict[int, Buyer]:
    """Every user as the users service has them (for `msshop verify`: a read model that
    names a user wrongly is as wrong as one that misses an order)."""
    with attached(databases) as conn:
        return {uid: {"id": uid, "name": name, "email": email}
                for uid, name, email in conn.execute("SELECT id, name, email FROM users.users")}


def all_user_orders(databases: dict[str, Path]) -> dict[int, list[OrderLine]]:
    """Every user's orders at once (for `msshop verify`); users without orders map to [].
    A saga's order for a user who does not exist (rejected: "no such user") is no user's:
    the read model has no such user either."""
    with attached(databases) as conn:
        answers: dict[int, list[OrderLine]] = {
            uid: [] for (uid,) in conn.execute("SELECT id FROM users.users")}
        for uid, *order in conn.execute(ALL_USERS_JOIN):
            if uid in answers:
                answers[uid].append(order_line(*order))
    return answers
