"""`msshop buy`: a purchase made by the write strategy asked for, and what became of it —
confirmed (the order), or rejected with the reason (out of stock, not enough credit, no
such user or product), nothing left taken.

direct-call asks the orders service (which takes stock and credit over HTTP); monolith
writes the three files in one transaction from the CLI (monolith_write.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from msshop.contracts.errors import ServiceError
from msshop.contracts.shop import Order
from msshop.contracts.strategies import WriteStrategy
from msshop.instruments import monolith_write
from msshop.instruments.asking import databases
from msshop.instruments.client import ShopClient
from msshop.runtime.orchestrator.state import State

REFUSED = (409, 422)  # a purchase refused, not a service failing
Result = Literal["confirmed", "rejected"]


@dataclass(frozen=True)
class Bought:
    strategy: WriteStrategy
    outcome: Result
    order: Order | None  # confirmed: the order
    created: bool  # False: the same request_id had already placed it
    reason: str | None = None  # rejected: why

    @property
    def exit_code(self) -> int:
        """confirmed 0, rejected 1 (usage is 2; a saga's pending will be 3)."""
        return 0 if self.outcome == "confirmed" else 1


def rejected(strategy: WriteStrategy, error: ServiceError) -> Bought | None:
    """The purchase refused, if that is what the error says (None: a service failed)."""
    if error.status not in REFUSED:
        return None
    return Bought(strategy, "rejected", None, False, error.message)


def buy(state: State, strategy: WriteStrategy, user_id: int, product_id: int,
        quantity: int, request_id: str | None = None) -> Bought:
    if strategy is WriteStrategy.MONOLITH:
        written = monolith_write.buy(databases(state), user_id, product_id, quantity,
                                     request_id)
        if written.order is None:
            return Bought(strategy, "rejected", None, False, written.reason)
        return Bought(strategy, "confirmed", written.order, written.created)
    try:
        order, created = ShopClient(state).buy(user_id, product_id, quantity,
                                               request_id or uuid.uuid4().hex,
                                               wait_published_ms=1000)
    except ServiceError as exc:
        refused = rejected(strategy, exc)
        if refused is None:
            raise
        return refused
    return Bought(strategy, "confirmed", order, created)
