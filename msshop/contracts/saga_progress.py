"""Where each saga in flight stands: the words of its step (`msshop sagas` and the
dashboard say the same), and what crosses the wire for the dashboard to put one together
(issue 28).

An orchestrated saga's step is one row of orders.db: orders' GET /sagas says it. A
choreographed one's is nowhere: orders knows its order is pending, products what it has
done for the purchase, users what it has. Its step is what they have done together
(`step_reached`). `msshop sagas` reads the three files at once (instruments/sagas.py); the
dashboard, which may open none of them, asks each participant (POST /saga/progress), and
with one of them down it cannot tell. That difference is the lesson.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from msshop.contracts.sagas import SagaState
from msshop.contracts.takes import Id, Key

MAX_IN_FLIGHT = 50  # sagas orders lists at once, and a participant is asked about


class PendingPurchase(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A choreographed saga not ended: its order, and its purchase's key (the takes')."""

    order_id: Id
    purchase: Key


class ProgressAsked(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """POST /saga/progress: what have you done for these purchases?"""

    purchases: Annotated[list[PendingPurchase],
                         msgspec.Meta(min_length=1, max_length=MAX_IN_FLIGHT)]


class Done(msgspec.Struct, frozen=True):
    """What one participant has done for one purchase: the saga's events it has applied
    (its `saga_steps`), and its take: held (True), given back (False), none (None)."""

    order_id: int
    steps: list[str]
    held: bool | None


class Progress(msgspec.Struct, frozen=True):
    """POST /saga/progress's answer, in the order asked."""

    service: str
    done: list[Done]


class InFlightSaga(msgspec.Struct, frozen=True):
    """A saga orders has not ended: its order, and (orchestrated) its row of `sagas`."""

    order_id: int
    purchase: str
    user_id: int
    product_id: int
    quantity: int
    strategy: str  # "saga" (choreographed) or "saga-orchestrated"
    started_at: float  # unix seconds the order was placed
    state: str = "pending"  # choreographed: pending; orchestrated: its SagaState
    deadline: float | None = None  # orchestrated: when its step is given up on
    reason: str | None = None  # orchestrated: why it is being undone


class SagasInFlight(msgspec.Struct, frozen=True):
    """orders' GET /sagas: how many sagas it has not ended, and the oldest of them."""

    count: int
    sagas: list[InFlightSaga]


def orchestrated_step(state: SagaState, deadline: float | None, reason: str | None,
                      now: float) -> str:
    """An orchestrated saga's step, with when it is given up on or why it is undone."""
    step = state.words
    if deadline is not None:
        return step + f" (given up on in {max(0.0, deadline - now):.1f} s)"
    return step + f" ({reason})" if reason else step


def step_reached(stock_step: bool, stock_held: int | bool | None, credit_step: bool,
                 credit_held: int | bool | None, given_back_step: bool) -> tuple[str, str]:
    """A choreographed saga's (step reached, the service whose move it is), from what each
    has done: whether products applied OrderPlaced, its take (held 1, given back 0, none
    None), whether users applied StockTaken, its take, and whether products applied
    CreditRefused."""
    if not stock_step:
        return "placed; the stock not taken yet", "products"
    if not stock_held:  # no take, or one given back: refused
        if given_back_step:
            return "the credit refused, the stock given back; not rejected yet", "orders"
        return "the stock refused; not rejected yet", "orders"
    if not credit_step:
        return "the stock taken; the credit not taken yet", "users"
    if credit_held:
        return "the stock and the credit taken; not confirmed yet", "orders"
    return "the credit refused; the stock not given back yet", "products"
