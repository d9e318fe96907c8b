"""The sagas in flight on the dashboard, each with its step (issue 28, "Watch it").

Orders' /health counts them at every look. While it counts any, the dashboard asks orders
for the oldest (GET /sagas) at most once every EVERY seconds, and at once when the list
was empty. An orchestrated saga's step is in orders' answer: its row of `sagas`. A
choreographed one's is nowhere, so the dashboard asks products and users what each has
done for those purchases (POST /saga/progress) and puts the step together as `msshop
sagas` does from the files (contracts/saga_progress.py). With one of them down the
dashboard cannot tell, and says so: the orchestrator's picture needs one file, the
choreography's needs every participant. Each route is an owner's (they name purchases):
asked with the owner's token the dashboard keeps in memory (dead_letters.py's), never in
the page. Without it the page shows the counts alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from msshop.contracts import events
from msshop.contracts.credentials import bearer
from msshop.contracts.saga_progress import (
    Done,
    InFlightSaga,
    PendingPurchase,
    Progress,
    ProgressAsked,
    SagasInFlight,
    orchestrated_step,
    step_reached,
)
from msshop.contracts.sagas import SagaState
from msshop.contracts.status import InFlight
from msshop.contracts.strategies import WriteStrategy

SHOWN = 10  # the oldest sagas in flight a Snapshot lists
EVERY = 1.0  # seconds between two askings while any is listed (at once when none is)
ORDERS = "orders"  # whose /health counts the sagas in flight, and GET /sagas lists them
PARTICIPANTS = ("products", "users")

T = TypeVar("T")
#: (part, method, path, body, headers) -> the JSON document it answered, or why none
Ask = Callable[[str, str, str, bytes | None, dict[str, str]],
               Awaitable[dict[str, Any] | str]]


class SagaView(msgspec.Struct, frozen=True):
    """A saga in flight as the page lists it."""

    order_id: int
    strategy: str  # saga | saga-orchestrated
    step: str  # what has been done and what not yet, or why it cannot be told
    waits_for: str  # the part whose move it is ("": it cannot be told)
    age_seconds: float
    user_id: int
    product_id: int
    quantity: int


class Sagas:
    def __init__(self, owner: str | None) -> None:
        self._headers = bearer(owner) if owner else {}
        self.shown: list[SagaView] = []
        self._asked_at = 0.0

    async def update(self, counted: InFlight | None, ask: Ask, now: float) -> None:
        """From orders' latest count (None: orders did not answer: the last known stay)."""
        if counted is None:
            return
        if not counted["saga"] and not any(counted["saga_orchestrated"].values()):
            self.shown = []
            return
        if not self._headers or (self.shown and now - self._asked_at < EVERY):
            return
        self._asked_at = now
        answer = await ask(ORDERS, "GET", f"/sagas?limit={SHOWN}", None, self._headers)
        listed = _converted(answer, SagasInFlight)
        if listed is None:
            return
        choreographed = [PendingPurchase(s.order_id, s.purchase) for s in listed.sagas
                         if s.strategy == WriteStrategy.SAGA and s.purchase]
        said: dict[str, dict[int, Done] | str] = {}
        if choreographed:
            body = msgspec.json.encode(ProgressAsked(choreographed))
            answers = await asyncio.gather(*(
                ask(name, "POST", "/saga/progress", body, self._headers)
                for name in PARTICIPANTS))
            for name, answer in zip(PARTICIPANTS, answers, strict=True):
                progress = _converted(answer, Progress)
                said[name] = ({done.order_id: done for done in progress.done}
                              if progress is not None else
                              answer if isinstance(answer, str) else "answered otherwise")
        self.shown = [view_of(saga, said, now) for saga in listed.sagas]


def view_of(saga: InFlightSaga, said: dict[str, dict[int, Done] | str], now: float
            ) -> SagaView:
    """One saga's line: an orchestrated one's step from its row; a choreographed one's from
    what products and users said of it (`said`: by order, or why they said nothing)."""
    if saga.strategy == WriteStrategy.SAGA_ORCHESTRATED:
        try:
            state = SagaState(saga.state)
        except ValueError:
            step, waits_for = saga.state, ""
        else:
            step = orchestrated_step(state, saga.deadline, saga.reason, now)
            waits_for = state.waits_for or "orders"
    else:
        step, waits_for = choreographed_step(saga.order_id, said)
    return SagaView(saga.order_id, saga.strategy, step, waits_for,
                    round(max(0.0, now - saga.started_at), 1), saga.user_id,
                    saga.product_id, saga.quantity)


def choreographed_step(order_id: int, said: dict[str, dict[int, Done] | str]
                       ) -> tuple[str, str]:
    """(step, whose move) from what products and users said, or what cannot be told. One
    of them silent, the other may still tell: products not yet having taken the stock, or
    having refused it, is the step whatever users did; users holding the credit means
    products had taken the stock, and only orders has a move left."""
    products, users = (_done(said.get(name, "was not asked"), order_id)
                       for name in PARTICIPANTS)
    if isinstance(products, Done):
        if isinstance(users, str) and events.ORDER_PLACED in products.steps and \
                products.held:
            return ("the stock taken; whether users took the credit cannot be told: "
                    f"users {users}", "")
        known = users if isinstance(users, Done) else Done(order_id, [], None)
        return step_reached(events.ORDER_PLACED in products.steps, products.held,
                            events.STOCK_TAKEN in known.steps, known.held,
                            events.CREDIT_REFUSED in products.steps)
    if isinstance(users, Done) and events.STOCK_TAKEN in users.steps and users.held:
        return step_reached(True, True, True, True, False)
    return (f"cannot be told: products {products} (no one service knows where a "
            "choreographed saga is)", "")


def _done(answer: dict[int, Done] | str, order_id: int) -> Done | str:
    """What a participant did for the order (nothing yet, if it did not name it), or why
    it did not say."""
    return answer if isinstance(answer, str) else answer.get(order_id,
                                                             Done(order_id, [], None))


def _converted(answer: dict[str, Any] | str, kind: type[T]) -> T | None:
    if isinstance(answer, str):
        return None
    try:
        return msgspec.convert(answer, kind)
    except msgspec.ValidationError:
        return None
