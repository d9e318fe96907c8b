"""`msshop verify`'s check of the invariant across services (issue 26), with the monolith's
view of the three files as the truth (read-only, ATTACHed: monolith.py).

Per product, its stock equals what it was given minus what confirmed orders hold and what
pending orders have reserved (a saga's order holds the takes made for it so far); per user,
the same for credit. Every confirmed order holds its stock and its credit, each taken
exactly once (the ledgers key each take by the purchase); a rejected order holds nothing
(its takes absent or given back); nothing is negative; and, once the shop is quiet (verify
asks after the read model has caught up), no order is still pending. A take no order
records (direct-call: orders stopped between the steps) is named with the numbers: the
cost of direct calls that msshop shows rather than hides. Each breach is one line.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from msshop.contracts.ledgers import CREDIT, STOCK, Book
from msshop.contracts.shop import OrderStatus
from msshop.instruments.monolith import attached

SHOWN = 50  # breaches listed; the rest are counted
CONFIRMED, PENDING, REJECTED = (OrderStatus.CONFIRMED.value, OrderStatus.PENDING.value,
                                OrderStatus.REJECTED.value)


@dataclass(frozen=True)
class Scope:
    """Part of the shop: these products and users alone (an experiment's strategies each
    buy with a cast of their own, and each is judged on its own)."""

    products: tuple[int, ...]
    users: tuple[int, ...]

    def of(self, book: Book) -> tuple[int, ...]:
        return self.products if book is STOCK else self.users


@dataclass(frozen=True)
class Holding:
    """How one ledger's amounts are named in a breach."""

    book: Book
    schema: str  # the file, as ATTACHed
    order_amount: str  # what a confirmed order holds of it, in SQL over orders o
    order_holder: str  # the order's column naming the holder


HOLDINGS = (
    Holding(STOCK, "products", "o.quantity", "o.product_id"),
    Holding(CREDIT, "users", "o.quantity * o.unit_price_cents", "o.user_id"),
)


def breaches(databases: dict[str, Path], now: float | None = None,
             scope: Scope | None = None) -> list[str]:
    """Every breach of the invariant, one line each (at most SHOWN, then a count). `now`:
    the time a pending order's age is counted to (the clock's, unless given); `scope`:
    these products and users alone (None: the whole shop)."""
    found: list[str] = []
    with attached(databases) as conn:
        for holding in HOLDINGS:
            within = _Within(None if scope is None else scope.of(holding.book))
            found += _taken_without_order(conn, holding, within)
            found += _orders_not_holding(conn, holding, within)
            found += _rejected_holding(conn, holding, within)
            found += _balances(conn, holding, within)
        found += _still_pending(conn, time.time() if now is None else now,
                                _Within(None if scope is None else scope.users))
    if len(found) > SHOWN:
        found = [*found[:SHOWN], f"and {len(found) - SHOWN:,} more"]
    return found


@dataclass(frozen=True)
class _Within:
    """A clause that keeps a query to the scope's holders (none: every row)."""

    ids: tuple[int, ...] | None

    def sql(self, column: str) -> str:
        return "" if self.ids is None else \
            f" AND {column} IN (SELECT value FROM json_each(?))"

    def params(self) -> tuple[str, ...]:
        return () if self.ids is None else (json.dumps(list(self.ids)),)

    def holds(self, holder: int) -> bool:
        return self.ids is None or holder in self.ids


def _shown(holding: Holding, amount: int) -> str:
    return holding.book.shown(amount)


def _taken_without_order(conn: sqlite3.Connection, holding: Holding, within: _Within
                         ) -> list[str]:
    book, schema = holding.book, holding.schema
    rows = conn.execute(
        f"SELECT t.holder_id, t.amount, t.purchase FROM {schema}.{book.name}_takes AS t "
        "LEFT JOIN orders.orders AS o ON o.request_id = t.purchase "
        f"WHERE t.given_back_at IS NULL AND o.id IS NULL{within.sql('t.holder_id')} "
        "ORDER BY t.holder_id, t.taken_at", within.params())
    return [f"{book.noun} {holder}: {_shown(holding, amount)} taken for purchase {purchase} "
            f"with no order — taken, never recorded nor given back (direct-call: orders "
            f"stopped between the steps)" for holder, amount, purchase in rows]


def _orders_not_holding(conn: sqlite3.Connection, holding: Holding, within: _Within
                        ) -> list[str]:
    """Confirmed orders without their take, once, of their amount, from their holder."""
    book, schema = holding.book, holding.schema
    rows = conn.execute(
        f"SELECT o.id, o.request_id, {holding.order_amount}, {holding.order_holder}, "
        f"t.purchase, t.amount, t.holder_id, t.given_back_at "
        f"FROM orders.orders AS o LEFT JOIN {schema}.{book.name}_takes AS t "
        "ON t.purchase = o.request_id WHERE o.status = ? AND (t.purchase IS NULL "
        f"OR t.given_back_at IS NOT NULL OR t.amount != {holding.order_amount} "
        f"OR t.holder_id != {holding.order_holder}){within.sql(holding.order_holder)} "
        "ORDER BY o.id", (CONFIRMED, *within.params()))
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


def _rejected_holding(conn: sqlite3.Connection, holding: Holding, within: _Within
                      ) -> list[str]:
    """Rejected orders whose take is still taken (a saga's compensation not done)."""
    book, schema = holding.book, holding.schema
    rows = conn.execute(
        f"SELECT o.id, o.request_id, o.reason, t.holder_id, t.amount "
        f"FROM orders.orders AS o JOIN {schema}.{book.name}_takes AS t "
        "ON t.purchase = o.request_id WHERE o.status = ? AND t.given_back_at IS NULL"
        f"{within.sql('t.holder_id')} ORDER BY o.id", (REJECTED, *within.params()))
    return [f"order {order_id} (purchase {key}): rejected ({reason or 'no reason given'}), "
            f"but {book.noun} {holder}'s {book.name} ({_shown(holding, amount)}) is still "
            "taken for it, never given back" for order_id, key, reason, holder, amount in rows]


def _still_pending(conn: sqlite3.Connection, now: float, users: _Within) -> list[str]:
    """After quiescence a saga has ended: an order still pending is stuck."""
    rows = conn.execute("SELECT id, request_id, created_at FROM orders.orders "
                        f"WHERE status = ?{users.sql('user_id')} ORDER BY id",
                        (PENDING, *users.params()))
    return [f"order {order_id} (purchase {key}): still pending {max(0.0, now - at):,.1f} s "
            "after it was placed, with every service caught up (its saga is stuck)"
            for order_id, key, at in rows]


def _balances(conn: sqlite3.Connection, holding: Holding, within: _Within) -> list[str]:
    """Per holder: the balance is what was given minus what confirmed orders hold and
    whatever else is still taken (by pending orders, by rejected ones, by no order: each of
    the last two named above); never negative."""
    book, schema = holding.book, holding.schema
    # one pass over each table, grouped (a correlated sum per holder would read every order
    # once per product)
    given = dict(conn.execute(f"SELECT holder_id, sum(amount) FROM {schema}.{book.name}_given "
                              "GROUP BY holder_id"))
    held = dict(conn.execute(f"SELECT {holding.order_holder}, sum({holding.order_amount}) "
                             f"FROM orders.orders AS o WHERE o.status = ? "
                             f"GROUP BY {holding.order_holder}", (CONFIRMED,)))
    # what is taken for no confirmed order, by whose it is: pending, rejected, none ('')
    others: dict[str, dict[int, int]] = {PENDING: {}, REJECTED: {}, "": {}}
    for status, holder, amount in conn.execute(
            f"SELECT coalesce(o.status, ''), t.holder_id, sum(t.amount) "
            f"FROM {schema}.{book.name}_takes AS t "
            "LEFT JOIN orders.orders AS o ON o.request_id = t.purchase "
            "WHERE t.given_back_at IS NULL AND (o.id IS NULL OR o.status != ?) "
            "GROUP BY 1, 2", (CONFIRMED,)):
        others.setdefault(status, {})[holder] = amount
    found = []
    for holder, balance in conn.execute(
            f"SELECT id, {book.column} FROM {schema}.{book.holders} WHERE true"
            f"{within.sql('id')} ORDER BY id", within.params()):
        if balance < 0:
            found.append(f"{book.noun} {holder}: {book.name} is {_shown(holding, balance)}, "
                         "below zero")
        gave, kept = given.get(holder, 0), held.get(holder, 0)
        reserved, rejected, leaked = (others[key].get(holder, 0)
                                      for key in (PENDING, REJECTED, ""))
        expected = gave - kept - reserved - rejected - leaked
        if balance != expected:
            also = "".join(f", {what} {_shown(holding, amount)}" for what, amount in (
                ("reserved by pending orders", reserved),
                ("still taken by rejected orders", rejected)) if amount)
            found.append(
                f"{book.noun} {holder}: {book.name} is {_shown(holding, balance)}, expected "
                f"{_shown(holding, expected)} (given {_shown(holding, gave)}, held by "
                f"confirmed orders {_shown(holding, kept)}{also}, taken with no order "
                f"{_shown(holding, leaked)})")
    return found
