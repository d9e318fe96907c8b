"""A ledger's takes (runtime/platform/ledger.py) on a real products.db: the usual call (every
key new, every holder with enough) is taken in two statements, and any call that is not
gets the same outcome as taking in turn, with nothing of the attempt left behind; a file
made before the takes were kept WITHOUT ROWID is migrated with its takes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from msshop.contracts.ledgers import STOCK
from msshop.runtime.platform import ledger
from msshop.runtime.platform.db import open_database, transaction
from msshop.runtime.services import products


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """products.db with product 1 (5 in stock) and product 2 (3 in stock)."""
    conn = open_database(tmp_path / "products.db", products.MIGRATIONS)
    with transaction(conn):
        conn.executemany("INSERT INTO products (id, sku, title, price_cents, stock, "
                         "updated_at) VALUES (?, ?, 'Hat', 250, ?, 0)",
                         [(1, "A", 5), (2, "B", 3)])
        ledger.given_at_creation(conn, STOCK, [(1, 5), (2, 3)], 0)
    yield conn
    conn.close()


def take(conn: sqlite3.Connection, *takes: tuple[str, int, int]) -> list[ledger.Taken]:
    with transaction(conn):
        return ledger.take(conn, STOCK, [ledger.Take(*each) for each in takes])


def stock(conn: sqlite3.Connection) -> dict[int, int]:
    return dict(conn.execute("SELECT id, stock FROM products").fetchall())


def takes(conn: sqlite3.Connection) -> dict[str, tuple[int | None, int, bool]]:
    return {key: (holder, amount, back is not None) for key, holder, amount, back in
            conn.execute("SELECT purchase, holder_id, amount, given_back_at FROM stock_takes")}


def test_every_key_new_and_enough_for_all_is_taken_at_once(conn: sqlite3.Connection) -> None:
    taken = take(conn, ("a", 1, 2), ("b", 2, 3), ("c", 1, 3))
    assert [(t.purchase, t.taken, t.again) for t in taken] == [
        ("a", True, False), ("b", True, False), ("c", True, False)]
    assert stock(conn) == {1: 0, 2: 0}
    assert takes(conn) == {"a": (1, 2, False), "b": (2, 3, False), "c": (1, 3, False)}


def test_too_little_for_all_takes_in_turn_and_leaves_nothing_of_the_attempt(
        conn: sqlite3.Connection) -> None:
    """Product 1 has 5: 4 then 4 more cannot both be taken; the first is, the second is
    refused with what is left, and the one for product 2 is taken."""
    taken = take(conn, ("a", 1, 4), ("b", 1, 4), ("c", 2, 1))
    assert [t.taken for t in taken] == [True, False, True]
    assert (taken[1].status, taken[1].left) == (409, 1)
    assert "out of stock: product 1 has 1, 4 asked" in (taken[1].reason or "")
    assert stock(conn) == {1: 1, 2: 2}
    assert takes(conn) == {"a": (1, 4, False), "c": (2, 1, False)}


def test_an_unknown_product_is_refused_and_the_rest_taken(conn: sqlite3.Connection) -> None:
    taken = take(conn, ("a", 1, 1), ("b", 9, 1))
    assert [(t.taken, t.status) for t in taken] == [(True, 200), (False, 422)]
    assert taken[1].reason == "product_id 9: no such product"
    assert stock(conn) == {1: 4, 2: 3}
    assert takes(conn) == {"a": (1, 1, False)}


def test_a_key_taken_before_or_twice_in_a_call_is_taken_once(conn: sqlite3.Connection
                                                               ) -> None:
    take(conn, ("a", 1, 2))
    taken = take(conn, ("b", 1, 1), ("a", 1, 2), ("b", 1, 1))
    assert [(t.taken, t.again) for t in taken] == [(True, False), (True, True), (True, True)]
    assert stock(conn) == {1: 2, 2: 3}
    again = take(conn, ("a", 1, 2), ("b", 1, 1))  # a call repeated whole
    assert [(t.taken, t.again) for t in again] == [(True, True), (True, True)]
    assert stock(conn) == {1: 2, 2: 3}


def test_a_key_given_back_is_not_taken_again(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        ledger.give_back(conn, STOCK, ["late"])  # rejected before its take arrived
    taken = take(conn, ("new", 1, 1), ("late", 1, 1))
    assert [t.taken for t in taken] == [True, False]
    assert taken[1].status == 409 and "was refused and given back" in (taken[1].reason or "")
    assert stock(conn) == {1: 4, 2: 3}


def test_takes_kept_with_a_rowid_are_migrated_to_their_own_key(tmp_path: Path) -> None:
    """A products.db from before the migration, with a take and a give-back, opens with the
    takes WITHOUT ROWID and every row kept; a repeated key is still found."""
    before = products.MIGRATIONS.index(STOCK.takes_without_rowid())
    old = open_database(tmp_path / "products.db", products.MIGRATIONS[:before])
    with transaction(old):
        old.execute("INSERT INTO products (id, sku, title, price_cents, stock, updated_at) "
                    "VALUES (1, 'A', 'Hat', 250, 5, 0)")
        ledger.take(old, STOCK, [ledger.Take("a", 1, 2)])
        ledger.give_back(old, STOCK, ["b"])
    old.close()
    conn = open_database(tmp_path / "products.db", products.MIGRATIONS)
    sql, = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'stock_takes'").fetchone()
    assert "WITHOUT ROWID" in sql
    assert takes(conn) == {"a": (1, 2, False), "b": (None, 0, True)}
    assert [t.again for t in take(conn, ("a", 1, 2))] == [True]
    assert stock(conn) == {1: 3}
    conn.close()
