"""Where products keep their stock and users their credit, with the ledgers beside them
(issue 26): the services write them (runtime/platform/ledger.py), `msshop verify` and the
monolith's purchase read and write them from the CLI. One place for the tables' names.

A Book may be qualified by the name a file is ATTACHed under (`in_schema`): the monolith's
one transaction over the three files uses the same statements as the services.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Book:
    """Where one service keeps a balance: its holders' table and column, and its ledger."""

    name: str  # "stock" | "credit": the ledger's tables are <name>_given, <name>_takes
    holders: str  # the table of holders ("products", "users")
    column: str  # the balance's column ("stock", "credit_cents")
    noun: str  # a holder in a refusal: "product", "user"
    short: str  # a refusal for too little: "out of stock", "not enough credit"
    shown: Callable[[int], str] = str  # an amount in a refusal (cents as currency)

    def schema(self, balance_now: str) -> str:
        """The ledger's tables, and what is given now: `balance_now` is a SELECT of (holder
        id, amount, at) for the holders already in the file (a migration's starting point).
        """
        return f"""
        CREATE TABLE {self.name}_given (
            id INTEGER PRIMARY KEY,
            holder_id INTEGER NOT NULL,
            amount INTEGER NOT NULL CHECK (amount >= 0),
            key TEXT UNIQUE,
            at REAL NOT NULL
        );
        CREATE INDEX {self.name}_given_by_holder ON {self.name}_given (holder_id);
        {self._takes(self.name + "_takes", rowid=True)};
        INSERT INTO {self.name}_given (holder_id, amount, at) {balance_now}
        """

    def takes_without_rowid(self) -> str:
        """A later migration: the takes kept in their key's own b-tree (WITHOUT ROWID), not
        in a table with an index beside it: a take is written once, not twice (a seed's
        10,000 takes: ~20% less time, and fewer pages for the checkpoint to copy)."""
        return f"""
        {self._takes(self.name + "_takes_keyed", rowid=False)};
        INSERT INTO {self.name}_takes_keyed
            SELECT purchase, holder_id, amount, taken_at, given_back_at
            FROM {self.name}_takes;
        DROP TABLE {self.name}_takes;
        ALTER TABLE {self.name}_takes_keyed RENAME TO {self.name}_takes
        """

    @staticmethod
    def _takes(table: str, rowid: bool) -> str:
        return f"""CREATE TABLE {table} (
            purchase TEXT PRIMARY KEY,
            holder_id INTEGER,
            amount INTEGER NOT NULL CHECK (amount >= 0),
            taken_at REAL NOT NULL,
            given_back_at REAL
        ){"" if rowid else " WITHOUT ROWID"}"""

    def in_schema(self, schema: str) -> Book:
        """The same book, in a file ATTACHed as `schema`."""
        return dataclasses.replace(self, name=f"{schema}.{self.name}",
                                   holders=f"{schema}.{self.holders}")


def _currency(cents: int) -> str:
    return f"{cents / 100:.2f}"


STOCK = Book("stock", "products", "stock", "product", "out of stock")
CREDIT = Book("credit", "users", "credit_cents", "user", "not enough credit", _currency)
