"""What crosses between orders and products/users when a purchase takes stock and credit
(issue 26, direct-call), and what the seed sends to give them: one place for the bodies
and answers of POST /products/takes, /users/takes, their give-backs, /products/stock and
/users/credit.

Each take is keyed by its purchase (the order's request_id): repeated, it is applied once;
given back, it stays given back (runtime/platform/ledger.py).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from msshop.contracts.limits import (
    MAX_BATCH,
    MAX_ID,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_REQUEST_ID,
    MAX_STOCK,
)

Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REQUEST_ID)]
MAX_CREDIT_CENTS = MAX_PRICE * 100 * MAX_QUANTITY * 1000  # a thousand of the dearest orders


class StockTake(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    purchase: Key
    product_id: Id
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY)]


class StockTakes(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Take stock for each purchase, in turn, while it lasts."""

    takes: Annotated[list[StockTake], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class CreditTake(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    purchase: Key
    user_id: Id
    amount_cents: Annotated[int, msgspec.Meta(ge=0, le=MAX_CREDIT_CENTS)]


class CreditTakes(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Take credit for each purchase, in turn, while it lasts."""

    takes: Annotated[list[CreditTake], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class Refused(msgspec.Struct, frozen=True):
    """A take refused: which (its index in the call), why, and the status a purchase
    refused for it is answered with (409 not enough, 422 no such id)."""

    index: int
    reason: str
    status: int


class TakeOutcomes(msgspec.Struct, frozen=True):
    """Every take of the call not `refused` was taken (`again`: by its key before, so not
    twice). Products add the unit price of each product taken from, in cents. Compact on
    purpose: a batch of 10,000 takes answers in a few bytes when all are taken."""

    refused: list[Refused]
    again: list[int]  # indexes
    unit_prices_cents: dict[int, int] = {}


class GiveBack(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Give back the takes of these purchases (a purchase refused by the other service)."""

    purchases: Annotated[list[Key], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class GivenBack(msgspec.Struct, frozen=True):
    given_back: int


class StockGive(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: Id
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_STOCK)]


class StockGiven(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Restock: add to each product's stock; with a key, a repeat is applied once."""

    products: Annotated[list[StockGive], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]
    key: Key | None = None


class CreditGive(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: Id
    amount: Annotated[float, msgspec.Meta(gt=0, le=MAX_CREDIT_CENTS / 100)]


class CreditGiven(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Top up: add to each user's credit; with a key, a repeat is applied once."""

    users: Annotated[list[CreditGive], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]
    key: Key | None = None


class Given(msgspec.Struct, frozen=True):
    given: int
