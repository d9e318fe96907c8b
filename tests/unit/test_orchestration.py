"""The orchestrated saga's definition (runtime/services/orders/orchestration.py), in
process: each state's move on each reply, on a reply to another command, and on its
deadline. The same moves against real processes: tests/e2e/test_saga.py."""

from __future__ import annotations

import msgspec
import pytest

from msshop.contracts import events
from msshop.contracts.events import (
    CreditGivenBackData,
    CreditRefusedData,
    CreditTakenData,
    GiveBackData,
    StockGivenBackData,
    StockRefusedData,
    StockTakenData,
    TakeCreditData,
)
from msshop.contracts.sagas import SagaState
from msshop.contracts.shop import OrderStatus
from msshop.runtime.services.orders.orchestration import (
    Move,
    Reply,
    Saga,
    overdue,
    transition,
)

ASKED = "command-1"  # the id of the command the saga waits for the reply to


def saga(state: SagaState, reason: str | None = None) -> Saga:
    return Saga(7, "p-7", 3, 5, 2, state, ASKED, None, reason, None, None)


TAKEN = StockTakenData(7, "p-7", 3, 5, 2, 2.5, ASKED)
STOCK_REFUSED = StockRefusedData(7, "p-7", "out of stock: product 5 has 1, 2 asked", 409,
                                 ASKED)
CREDIT_TAKEN = CreditTakenData(7, "p-7", 3, 5.0, 2.5, ASKED)
CREDIT_REFUSED = CreditRefusedData(7, "p-7", "not enough credit", 409, 2.5, ASKED)
CREDIT_BACK = CreditGivenBackData(7, "p-7", 3, 0.0, "users did not answer", ASKED)
STOCK_BACK = StockGivenBackData(7, "p-7", 5, 2, "not enough credit", ASKED)


def test_taking_the_stock_then_the_credit_confirms_at_products_price() -> None:
    move = transition(saga(SagaState.TAKING_STOCK), TAKEN)
    assert move is not None and move.state is SagaState.TAKING_CREDIT and move.timed
    assert move.command == (events.TAKE_CREDIT, TakeCreditData(7, "p-7", 3, 5.0, 2.5))
    assert move.price_cents == 250
    assert transition(saga(SagaState.TAKING_CREDIT), CREDIT_TAKEN
                      ) == Move(SagaState.CONFIRMED, ends=OrderStatus.CONFIRMED)


def test_a_refused_stock_rejects_with_nothing_to_undo() -> None:
    assert transition(saga(SagaState.TAKING_STOCK), STOCK_REFUSED
                      ) == Move(SagaState.REJECTED, reason=STOCK_REFUSED.reason,
                                ends=OrderStatus.REJECTED)


def test_a_refused_credit_gives_the_stock_back_then_rejects_with_its_reason() -> None:
    move = transition(saga(SagaState.TAKING_CREDIT), CREDIT_REFUSED)
    assert move == Move(SagaState.GIVING_STOCK_BACK, (events.GIVE_STOCK_BACK, GiveBackData(
        7, "p-7", "not enough credit")), reason="not enough credit")
    assert not move.timed  # a compensation waits as long as it takes
    assert transition(saga(SagaState.GIVING_STOCK_BACK, "not enough credit"), STOCK_BACK
                      ) == Move(SagaState.REJECTED, reason="not enough credit",
                                ends=OrderStatus.REJECTED)


def test_a_silent_participant_is_given_up_on_and_the_saga_undone_newest_step_first() -> None:
    stock = overdue(saga(SagaState.TAKING_STOCK), 10.0)
    reason = "products did not answer within 10 s"
    assert stock == Move(SagaState.GIVING_STOCK_BACK, (events.GIVE_STOCK_BACK, GiveBackData(
        7, "p-7", reason)), reason=reason)
    credit = overdue(saga(SagaState.TAKING_CREDIT), 0.5)
    reason = "users did not answer within 0.5 s"
    assert credit == Move(SagaState.GIVING_CREDIT_BACK, (
        events.GIVE_CREDIT_BACK, GiveBackData(7, "p-7", reason)), reason=reason)
    back = transition(saga(SagaState.GIVING_CREDIT_BACK, reason), CREDIT_BACK)
    assert back == Move(SagaState.GIVING_STOCK_BACK, (events.GIVE_STOCK_BACK, GiveBackData(
        7, "p-7", reason)), reason=reason)
    for undoing in (SagaState.GIVING_CREDIT_BACK, SagaState.GIVING_STOCK_BACK,
                    SagaState.CONFIRMED, SagaState.REJECTED):
        assert overdue(saga(undoing), 10.0) is None


@pytest.mark.parametrize("state", list(SagaState))
@pytest.mark.parametrize(("kind", "reply"), [
    (events.STOCK_TAKEN, TAKEN), (events.STOCK_REFUSED, STOCK_REFUSED),
    (events.CREDIT_TAKEN, CREDIT_TAKEN), (events.CREDIT_REFUSED, CREDIT_REFUSED),
    (events.CREDIT_GIVEN_BACK, CREDIT_BACK), (events.STOCK_GIVEN_BACK, STOCK_BACK)])
def test_a_reply_moves_only_the_state_that_awaits_it_and_only_for_its_command(
        state: SagaState, kind: str, reply: Reply) -> None:
    """A late reply (to a step given up on), a repeated one, or one to another command
    changes nothing; an ended saga takes no reply at all."""
    awaited = {SagaState.TAKING_STOCK: {events.STOCK_TAKEN, events.STOCK_REFUSED},
               SagaState.TAKING_CREDIT: {events.CREDIT_TAKEN, events.CREDIT_REFUSED},
               SagaState.GIVING_CREDIT_BACK: {events.CREDIT_GIVEN_BACK},
               SagaState.GIVING_STOCK_BACK: {events.STOCK_GIVEN_BACK}}.get(state, set())
    moved = transition(saga(state), reply)
    assert (moved is not None) == (kind in awaited)
    other = msgspec.structs.replace(reply, reply_to="command-0")
    assert transition(saga(state), other) is None
