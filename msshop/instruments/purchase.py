"""`msshop buy`: a purchase made by the write strategy asked for, and what became of it —
confirmed (the order), or rejected with the reason (out of stock, not enough credit, no
such user or product), nothing left taken.

direct-call asks the orders service (which takes stock and credit over HTTP); monolith
writes the three files in one transaction from the CLI (monolith_write.py); saga asks
orders to record the order pending, and (with a wait) asks again until products and users
have said: confirmed, or rejected with the reason; still pending once the wait is over.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Literal

from msshop.contracts.errors import ServiceError
from msshop.contracts.shop import Order, OrderStatus
from msshop.contracts.strategies import WriteStrategy
from msshop.instruments import monolith_write
from msshop.instruments.asking import databases
from msshop.instruments.client import ShopClient
from msshop.runtime.orchestrator.state import State

REFUSED = (409, 422)  # a purchase refused, not a service failing
Result = Literal["confirmed", "rejected", "pending"]
ASK_MS = 5000  # the longest one GET /orders/{id}?wait_ms= waits (within the client's timeout)
#: what `buy` exits with: confirmed 0, rejected 1, (usage 2), a saga still pending 3
EXIT_CODES: dict[Result, int] = {"confirmed": 0, "rejected": 1, "pending": 3}


@dataclass(frozen=True)
class Bought:
    strategy: WriteStrategy
    outcome: Result
    order: Order | None  # confirmed: the order (a saga's: whatever its status)
    created: bool  # False: the same request_id had already placed it
    reason: str | None = None  # rejected: why

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]


def rejected(strategy: WriteStrategy, error: ServiceError) -> Bought | None:
    """The purchase refused, if that is what the error says (None: a service failed)."""
    if error.status not in REFUSED:
        return None
    return Bought(strategy, "rejected", None, False, error.message)


def buy(state: State, strategy: WriteStrategy, user_id: int, product_id: int,
        quantity: int, request_id: str | None = None, wait: float = 0.0) -> Bought:
    """`wait`: a saga's purchase waits up to this many seconds for its outcome."""
    if strategy.saga:
        return by_saga(ShopClient(state), user_id, product_id, quantity, request_id, wait,
                       strategy=strategy)
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


def by_saga(client: ShopClient, user_id: int, product_id: int, quantity: int,
            request_id: str | None, wait: float, traceparent: str | None = None,
            strategy: WriteStrategy = WriteStrategy.SAGA) -> Bought:
    """A saga's purchase (choreographed or orchestrated): placed pending; with `wait`, its
    outcome once known."""
    order, created = client.buy(user_id, product_id, quantity, request_id or uuid.uuid4().hex,
                                traceparent=traceparent, write=strategy)
    return saga_outcome(awaited(client, order, wait), created, strategy)


def awaited(client: ShopClient, order: Order, wait: float) -> Order:
    """The order once it is no longer pending, or as it is after `wait` seconds."""
    deadline = time.monotonic() + wait
    while order["status"] == OrderStatus.PENDING:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            break
        order = client.order(order["id"], min(remaining_ms, ASK_MS))
    return order


def saga_outcome(order: Order, created: bool,
                 strategy: WriteStrategy = WriteStrategy.SAGA) -> Bought:
    if order["status"] == OrderStatus.CONFIRMED:
        return Bought(strategy, "confirmed", order, created)
    if order["status"] == OrderStatus.REJECTED:
        return Bought(strategy, "rejected", order, created, order["reason"])
    return Bought(strategy, "pending", order, created)
