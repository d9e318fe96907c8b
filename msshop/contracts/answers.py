"""The user-orders answer: what the query service answers (replicated, direct-call), what
the monolith's join gives in the CLI, and what every instrument and renderer reads. One
shape for all three strategies, so they can be compared line by line.

TypedDicts: at run time they are the plain dicts the services already encode, so they
cost nothing on the hot path and nothing to import in the CLI.
"""

# No `from __future__ import annotations` here: a TypedDict with string annotations
# compiles each one as it is defined (4x the time), and the services import these
# on the way to their start (their OpenAPI documents name them).
from typing import Literal, NotRequired, TypedDict

QUESTION = "user-orders"


class OrderLine(TypedDict):
    """One order of the user, with its product's title (None: not known, e.g. the product's
    event has not reached the read model yet, or products was down), and where it stands:
    `status` is an OrderStatus's value (contracts/shop.py: pending, confirmed, rejected),
    `reason` why it was rejected (None unless rejected). A pending saga order's price is 0
    until products says it: prices are shown as the order has them."""

    order_id: int
    product_id: int
    title: str | None
    quantity: int
    unit_price: float
    total: float
    status: str
    reason: str | None


# An OrderStatus's value (contracts/shop.py imports this module, so not the enum here): an
# order that does not say (monolith and direct-call orders, an older OrderPlaced) is this.
CONFIRMED = "confirmed"


def order_line(order_id: int, product_id: int, title: str | None, quantity: int,
               unit_price_cents: int, status: str = CONFIRMED,
               reason: str | None = None) -> OrderLine:
    """The one way an order line is made: prices are stored as cents, sent as decimals."""
    return {"order_id": order_id, "product_id": product_id, "title": title,
            "quantity": quantity, "unit_price": unit_price_cents / 100,
            "total": quantity * unit_price_cents / 100, "status": status, "reason": reason}


class Buyer(TypedDict):
    id: int
    name: str | None  # None: users was down and the answer is partial
    email: str | None


class LiveFreshness(TypedDict):
    """Read from the owning services just now (direct-call, the monolith)."""

    live: Literal[True]


class ReplicaFreshness(TypedDict):
    """How current the query service's read model is: the bus position it has applied,
    the bus's head as last seen, and whether it is listening."""

    position: int
    bus_head: int
    behind: int
    caught_up: bool
    catching_up_to: int | None
    listening: bool
    head_seen_ms_ago: float | None
    last_applied_ms_ago: float | None
    bus_error: str | None
    log_problem: str | None  # the bus's log is not the one the read model was built from


Freshness = LiveFreshness | ReplicaFreshness


class Gap(TypedDict):
    """What a partial direct-call answer lacks, and why: which service failed, how."""

    service: str
    failure: str | None  # refused | timeout | 5xx | 4xx
    error: str
    missing: str  # e.g. "the product titles"


class UserOrders(TypedDict):
    question: str  # always QUESTION
    strategy: str  # replicated | direct-call | monolith
    user: Buyer
    orders: list[OrderLine]
    freshness: Freshness
    trace_id: NotRequired[str | None]
    fanout: NotRequired[str]  # direct-call
    partial: NotRequired[bool]  # direct-call with partial=1
    missing: NotRequired[list[Gap]]
    label: NotRequired[str]  # monolith: that it breaks encapsulation
