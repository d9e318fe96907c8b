"""A balance kept with its ledger: products' stock, users' credit (issue 26).

A holder's balance (a product's stock, a user's credit) is one column of its row, CHECKed
never to go below zero. Beside it, in the same file, the service keeps what `msshop verify`
reads to check the invariant across services:

- `<name>_given`: every amount given (the balance at creation or migration, each later
  restock or top-up), with an optional key so a give repeated is applied once;
- `<name>_takes`: every take, keyed by the purchase (its request_id), with the amount and
  whether it was given back. A take repeated with the same key is applied once, and a key
  given back stays given back: a late or repeated take of a purchase already rejected
  must not take again (direct-call's retries and, later, the saga's redelivered events).

The balance always equals what was given minus the takes not given back; the service keeps
it so in one transaction per call. Plain functions over the connection, as the services'.
"""

from __future__ import annotations

import sqlite3
import time

import msgspec

from msshop.contracts.ledgers import Book


class Take(msgspec.Struct, frozen=True):
    """Take `amount` from holder `holder_id` for `purchase` (its key)."""

    purchase: str
    holder_id: int
    amount: int


class Taken(msgspec.Struct, frozen=True):
    """A take's outcome: taken (`again`: it had been, by this key, before), or refused
    with the reason; `status` is the HTTP status a refusal is answered with."""

    purchase: str
    taken: bool
    again: bool = False
    reason: str | None = None
    status: int = 200
    left: int | None = None  # the balance after the take, or when it was refused


def take(conn: sqlite3.Connection, book: Book, takes: list[Take]) -> list[Taken]:
    """Each take in turn (call inside the service's write transaction): taken while the
    balance lasts. Refused: no such holder (422), not enough (409), or the purchase was
    given back before (409)."""
    now = time.time()
    outcomes: list[Taken] = []
    known = dict(_known(conn, book, [t.purchase for t in takes]))
    for each in takes:
        seen = known.get(each.purchase)
        if seen is not None:
            outcomes.append(
                Taken(each.purchase, True, again=True) if seen is False else
                Taken(each.purchase, False, reason=f"purchase {each.purchase} was refused "
                      "and given back before; buy again with a new request_id", status=409))
            continue
        row = conn.execute(
            f"UPDATE {book.holders} SET {book.column} = {book.column} - ? "
            f"WHERE id = ? AND {book.column} >= ? RETURNING {book.column}",
            (each.amount, each.holder_id, each.amount)).fetchone()
        if row is not None:
            conn.execute(f"INSERT INTO {book.name}_takes (purchase, holder_id, amount, "
                         "taken_at) VALUES (?, ?, ?, ?)",
                         (each.purchase, each.holder_id, each.amount, now))
            known[each.purchase] = False
            outcomes.append(Taken(each.purchase, True, left=row[0]))
            continue
        have = conn.execute(f"SELECT {book.column} FROM {book.holders} WHERE id = ?",
                            (each.holder_id,)).fetchone()
        if have is None:
            outcomes.append(Taken(each.purchase, False, status=422,
                                  reason=f"{book.noun}_id {each.holder_id}: no such "
                                         f"{book.noun}"))
        else:
            outcomes.append(Taken(
                each.purchase, False, status=409, left=have[0],
                reason=f"{book.short}: {book.noun} {each.holder_id} has "
                       f"{book.shown(have[0])}, {book.shown(each.amount)} asked"))
    return outcomes


def _known(conn: sqlite3.Connection, book: Book, purchases: list[str]
           ) -> list[tuple[str, bool]]:
    """(purchase, given back) for each key this ledger already has."""
    return [(key, back is not None) for key, back in conn.execute(
        f"SELECT purchase, given_back_at FROM {book.name}_takes WHERE purchase IN "
        "(SELECT value FROM json_each(?))", (msgspec.json.encode(purchases),))]


def give_back(conn: sqlite3.Connection, book: Book, purchases: list[str]) -> int:
    """Give back each purchase's take, once (call inside the write transaction); a key
    never taken is recorded as given back, so a take arriving after it does not take.
    How many amounts went back."""
    now = time.time()
    returned = 0
    for purchase in purchases:
        row = conn.execute(
            f"UPDATE {book.name}_takes SET given_back_at = ? WHERE purchase = ? AND "
            "given_back_at IS NULL RETURNING holder_id, amount", (now, purchase)).fetchone()
        if row is None:
            conn.execute(f"INSERT OR IGNORE INTO {book.name}_takes (purchase, holder_id, "
                         "amount, taken_at, given_back_at) VALUES (?, NULL, 0, ?, ?)",
                         (purchase, now, now))
            continue
        conn.execute(f"UPDATE {book.holders} SET {book.column} = {book.column} + ? "
                     "WHERE id = ?", (row[1], row[0]))
        returned += 1
    return returned


def give(conn: sqlite3.Connection, book: Book, gives: list[tuple[int, int]],
         key: str | None) -> list[int]:
    """Add each (holder id, amount) to its balance and the ledger (inside the write
    transaction); with a `key`, a give repeated is applied once per holder. The ids of
    holders that do not exist (nothing is given then: the caller refuses the lot)."""
    now = time.time()
    missing: list[int] = []
    for holder_id, amount in gives:
        keyed = None if key is None else f"{key}/{holder_id}"
        if keyed is not None and conn.execute(
                f"SELECT 1 FROM {book.name}_given WHERE key = ?", (keyed,)).fetchone():
            continue
        changed = conn.execute(f"UPDATE {book.holders} SET {book.column} = {book.column} + ? "
                               "WHERE id = ?", (amount, holder_id)).rowcount
        if not changed:
            missing.append(holder_id)
            continue
        conn.execute(f"INSERT INTO {book.name}_given (holder_id, amount, key, at) "
                     "VALUES (?, ?, ?, ?)", (holder_id, amount, keyed, now))
    return missing


def given_at_creation(conn: sqlite3.Connection, book: Book,
                      rows: list[tuple[int, int]], at: float) -> None:
    """What new holders start with, in the ledger (inside the creating transaction)."""
    conn.executemany(f"INSERT INTO {book.name}_given (holder_id, amount, at) "
                     "VALUES (?, ?, ?)", [(holder, amount, at) for holder, amount in rows
                                          if amount])
