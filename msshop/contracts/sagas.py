"""Where an orchestrated saga stands (issue 27): the states orders' orchestrator keeps in
orders.db's `sagas` table, one place for their names, whose reply each waits for, and the
words `msshop sagas` says them in.

    taking-stock ──StockTaken──► taking-credit ──CreditTaken──► confirmed
         │ StockRefused              │ CreditRefused
         ▼                           ▼
      rejected ◄──StockGivenBack── giving-stock-back ◄──CreditGivenBack── giving-credit-back
         ▲                           ▲                                        ▲
         └ (no answer in time) ──────┘ taking-stock     taking-credit (no answer in time) ┘

A compensation waits as long as it takes: what it undoes may have happened.
"""

from __future__ import annotations

from enum import StrEnum


class SagaState(StrEnum):
    TAKING_STOCK = "taking-stock"
    TAKING_CREDIT = "taking-credit"
    GIVING_CREDIT_BACK = "giving-credit-back"
    GIVING_STOCK_BACK = "giving-stock-back"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"

    @property
    def ended(self) -> bool:
        return self in (SagaState.CONFIRMED, SagaState.REJECTED)

    @property
    def waits_for(self) -> str | None:
        """The participant whose reply the saga waits for (None: it has ended)."""
        return _WAITS_FOR.get(self)

    @property
    def words(self) -> str:
        """What `msshop sagas` says of a saga in this state."""
        return _WORDS[self]


_WAITS_FOR = {SagaState.TAKING_STOCK: "products", SagaState.TAKING_CREDIT: "users",
              SagaState.GIVING_CREDIT_BACK: "users", SagaState.GIVING_STOCK_BACK: "products"}
_WORDS = {
    SagaState.TAKING_STOCK: "TakeStock sent; no answer yet",
    SagaState.TAKING_CREDIT: "the stock taken; TakeCredit sent, no answer yet",
    SagaState.GIVING_CREDIT_BACK: "undoing: GiveCreditBack sent, no answer yet",
    SagaState.GIVING_STOCK_BACK: "undoing: GiveStockBack sent, no answer yet",
    SagaState.CONFIRMED: "confirmed",
    SagaState.REJECTED: "rejected",
}

#: the unfinished states, as SQL's IN list (the partial index and every query that uses it
#: say exactly this)
UNFINISHED_SQL = "state NOT IN ('confirmed', 'rejected')"
