"""`msshop verify`'s check of the invariant across services (issue 26), with the monolith's
view of the three files as the truth (read-only, ATTACHed: monolith.py).

Per product, its stock equals what it was given minus what confirmed orders hold; per user,
the same for credit; every order holds its stock and its credit, each taken exactly once
(the ledgers key each take by the purchase); nothing is negative. A take no order records
(direct-call: orders stopped between the steps) is named with the numbers: the cost of
direct calls that msshop shows rather than hides. Each breach is one line.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from msshop.contracts.ledgers import CREDIT, STOCK, Book
from msshop.instruments.monolith import attached

SHOWN = 50  # breaches listed; the rest are counted


@dataclass(frozen=True)
class Holding:
    """How one ledger's amounts are named in a breach."""

    book: Book
    schema: str  # the file, as ATTACHed
    order_amount: str  # what an order holds of it, in SQL over orders o
    order_holder: str  # the order's column naming the holder


HOLDINGS = (
    Holding(STOCK, "products", "o.quantity", "o.product_id"),
    Holding(CREDIT, "users", "o.quantity * o.unit_price_cents", "o.user_id"),
)


def breaches(databases: dict[str, Path]) -> list[str]:
    """Every breach of the invariant, one line each (at most SHOWN, then a count)."""
    found: list[str] = []
    with attached(databases) as conn:
        for holding in HOLDINGS:
            found += _taken_without_order(conn, holding)
            found += _orders_not_holding(conn, holding)
            found += _balances(conn, holding)
    if len(found) > SHOWN:
        found = [*found[:SHOWN], f"and {len(found) - SHOWN:,} more"]
    return found


def _shown(holding: Holding, amount: int) -> str:
    return holding.book.shown(amount)


def _taken_without_order(conn: sqlite3.Connection, holding: Holding) -> list[str]:
    book, schema = holding.book, holding.schema
    rows = conn.execute(
        f"SELECT t.holder_id, t.amount, t.purchase FROM {schema}.{book.name}_takes AS t "
        "LEFT JOIN orders.orders AS o ON o.request_id = t.purchase "
        "WHERE t.given_back_at IS NULL AND o.id IS NULL ORDER BY t.holder_id, t.taken_at")
    return [f"{book.noun} {holder}: {_shown(holding, amount)} taken for purchase {purchase} "
            f"with no order — taken, never recorded nor given back (direct-call: orders "
            f"stopped between the steps)" for holder, amount, purchase in rows]


def _orders_not_holding(conn: sqlite3.Connection, holding: Holding) -> list[str]:
    book, schema = holding.book, holding.schema
    rows = conn.execute(
        f"SELECT o.id, o.request_id, {holding.order_amount}, {holding.order_holder}, "
        f"t.purchase, t.amount, t.holder_id, t.given_back_at "
        f"FROM orders.orders AS o LEFT JOIN {schema}.{book.name}_takes AS t "
        "ON t.purchase = o.request_id WHERE t.purchase IS NULL OR t.given_back_at IS NOT NULL "
        f"OR t.amount != {holding.order_amount} OR t.holder_id != {holding.order_holder} "
        "ORDER BY o.id")
    found = []
    for order_id, key, amount, holder, taken_key, taken, taken_from, given_back in rows:
        what = f"order {order_id} ({book.noun} {holder}, purchase {key})"
        if taken_key is None:
            found.append(f"{what}: confirmed with no {book.name} taken for it, "
                         f"{_shown(holding, amount)} expected")
        elif given_back is not None:
            found.append(f"{what}: confirmed, but its {book.name} "
                         f"({_shown(holding, taken)}) was given back")
        else:
            found.append(f"{what}: holds {_shown(holding, amount)} of {book.name}, "
                         f"{_shown(holding, taken)} taken from {book.noun} {taken_from}")
    return found


def _balances(conn: sqlite3.Connection, holding: Holding) -> list[str]:
    """Per holder: the balance is what was given minus what confirmed orders hold and what
    is taken with no order (each named above); never negative."""
    book, schema = holding.book, holding.schema
    # one pass over each table, grouped (a correlated sum per holder would read every order
    # once per product)
    given = dict(conn.execute(f"SELECT holder_id, sum(amount) FROM {schema}.{book.name}_given "
                              "GROUP BY holder_id"))
    held = dict(conn.execute(f"SELECT {holding.order_holder}, sum({holding.order_amount}) "
                             f"FROM orders.orders AS o GROUP BY {holding.order_holder}"))
    leaked = dict(conn.execute(
        f"SELECT t.holder_id, sum(t.amount) FROM {schema}.{book.name}_takes AS t "
        "LEFT JOIN orders.orders AS o ON o.request_id = t.purchase "
        "WHERE t.given_back_at IS NULL AND o.id IS NULL GROUP BY t.holder_id"))
    rows = [(holder, balance, given.get(holder, 0), held.get(holder, 0),
             leaked.get(holder, 0)) for holder, balance in conn.execute(
                 f"SELECT id, {book.column} FROM {schema}.{book.holders} ORDER BY id")]
    found = []
    for holder, balance, given, held, leaked in rows:
        if balance < 0:
            found.append(f"{book.noun} {holder}: {book.name} is {_shown(holding, balance)}, "
                         "below zero")
        expected = given - held - leaked
        if balance != expected:
            found.append(
                f"{book.noun} {holder}: {book.name} is {_shown(holding, balance)}, expected "
                f"{_shown(holding, expected)} (given {_shown(holding, given)}, held by "
                f"confirmed orders {_shown(holding, held)}, taken with no order "
                f"{_shown(holding, leaked)})")
    return found
