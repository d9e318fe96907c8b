"""The query service's kept answers (query/kept.py): what each event lets go, and the
bound on what is kept."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import msgspec
import pytest

from msshop.contracts import events
from msshop.contracts.answers import OrderLine, order_line
from msshop.contracts.events import Received
from msshop.runtime.services.query import replicated
from msshop.runtime.services.query.kept import ENTRY, LARGEST, MIB, Answers


def event(kind: str, aggregate_id: int, data: dict[str, object]) -> Received:
    return Received(id=f"e-{kind}-{aggregate_id}", type=kind, source="test",
                    aggregate_type=kind, aggregate_id=aggregate_id, aggregate_version=1,
                    occurred_at=0.0, data=msgspec.Raw(msgspec.json.encode(data)))


def orders(count: int, title: str = "Hat") -> list[OrderLine]:
    return [order_line(n, 1, title, 1, 1000) for n in range(count)]


def keep(answers: Answers, user_id: int, count: int = 1, title: str = "Hat") -> None:
    answers.keep(user_id, {"id": user_id, "name": "U", "email": "u@example.com"},
                 orders(count, title), {"count": 1 + count}, position=7)


def test_a_kept_answer_is_the_same_json_as_the_answer() -> None:
    answers = Answers()
    keep(answers, 1, 3)
    kept = answers.get(1)
    assert kept is not None and kept.rows == 4 and kept.position == 7
    assert msgspec.json.decode(kept.orders) == orders(3)
    document = msgspec.json.encode({"user": kept.user, "orders": kept.orders})
    assert msgspec.json.decode(document) == {
        "user": {"id": 1, "name": "U", "email": "u@example.com"}, "orders": orders(3)}


def test_an_order_lets_go_of_its_buyer_only() -> None:
    answers = Answers()
    keep(answers, 1)
    keep(answers, 2)
    answers.applied(event(events.ORDER_PLACED, 99, {"id": 99, "user_id": 2, "product_id": 1,
                                                     "quantity": 1, "unit_price": 10.0}))
    assert answers.get(1) is not None and answers.get(2) is None


def test_an_orders_outcome_lets_go_of_its_buyer_and_a_sagas_step_of_nobody() -> None:
    """Issue 26: OrderConfirmed / OrderRejected change the buyer's answer; the steps
    between (StockTaken ...) change none, so they must not empty what is kept."""
    answers = Answers()
    keep(answers, 1)
    keep(answers, 2)
    for step in (events.STOCK_TAKEN, events.CREDIT_REFUSED, events.STOCK_GIVEN_BACK):
        answers.applied(event(step, 99, {"order_id": 99, "purchase": "p", "user_id": 2}))
    assert len(answers) == 2
    for ended in (events.ORDER_CONFIRMED, events.ORDER_REJECTED):
        keep(answers, 2)
        answers.applied(event(ended, 99, {"id": 99, "user_id": 2, "product_id": 1,
                                          "quantity": 1, "unit_price": 10.0}))
        assert answers.get(1) is not None and answers.get(2) is None


def test_a_user_event_lets_go_of_that_user_and_a_product_event_of_everyone() -> None:
    answers = Answers()
    keep(answers, 1)
    keep(answers, 2)
    answers.applied(event(events.USER_SIGNED_UP, 1, {"id": 1, "email": "a@b.c", "name": "A"}))
    assert answers.get(1) is None and answers.get(2) is not None
    answers.applied(event(events.PRODUCT_UPDATED, 1, {"id": 1, "title": "Cap", "price": 1.0}))
    assert len(answers) == 0


def test_the_oldest_answers_go_past_the_bound_and_a_huge_one_is_never_kept() -> None:
    sizing = Answers()
    keep(sizing, 1, 10)
    one = sizing.bytes  # one answer of 10 orders, as counted
    answers = Answers(most_bytes=3 * one)
    for user_id in range(1, 6):
        keep(answers, user_id, 10)
    assert [u for u in range(1, 6) if answers.get(u) is not None] == [3, 4, 5]
    huge = LARGEST // len(msgspec.json.encode(orders(1))) + 1
    keep(answers, 9, huge)
    assert answers.get(9) is None and len(answers) == 3


def rows(user_id: int, count: int) -> list[tuple[Any, ...]]:
    """An answer's order rows as replicated.rows_of reads them."""
    return [(1, user_id * 1000 + n, 5 + n % 7, f"Hat number {n}", 1, 1999,
             user_id * 1000 + n, 3, "confirmed", None, 1) for n in range(count)]


def keep_like_the_service(answers: Answers, user_id: int, count: int) -> None:
    """What the query service keeps for a user with `count` orders: their JSON and the
    sources of the read's span, as replicated.user_orders makes them."""
    read = rows(user_id, count)
    answers.keep(user_id, {"id": user_id, "name": f"User Number{user_id}",
                           "email": f"user{user_id}@example.com"},
                 [order_line(r[1], r[2], r[3], r[4], r[5]) for r in read],
                 replicated.sources(user_id, read, 20), position=123_456)


def test_a_user_without_orders_counts_what_the_answer_holds_not_two_bytes() -> None:
    answers = Answers()
    keep_like_the_service(answers, 1_000_000, 0)
    kept = answers.get(1_000_000)
    assert kept is not None
    assert answers.bytes == kept.size >= len(kept.user) + len(kept.orders) + ENTRY


@pytest.mark.parametrize("count", [0, 1, 5, 30])
def test_what_is_counted_covers_what_python_really_holds(count: int) -> None:
    """The count is not below what tracemalloc sees the kept answers take, nor far above."""
    answers = Answers(most_bytes=1 << 60)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for user_id in range(1_000_000, 1_002_000):
            keep_like_the_service(answers, user_id, count)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held <= answers.bytes <= held * 1.5, (held, answers.bytes)


def test_many_distinct_users_stay_within_a_small_bound_the_oldest_let_go() -> None:
    answers = Answers(most_bytes=MIB)
    for user_id in range(1_000_000, 1_200_000):  # 200,000 users asked once
        keep_like_the_service(answers, user_id, 0)
        assert answers.bytes <= MIB
    assert 500 < len(answers) < 1100  # ~1,100 bytes each
    assert answers.get(1_199_999) is not None and answers.get(1_000_000) is None
    answers.forget_all()
    assert answers.bytes == 0 and len(answers) == 0


def test_an_event_gives_back_what_its_answer_counted() -> None:
    answers = Answers()
    keep_like_the_service(answers, 1, 3)
    keep_like_the_service(answers, 2, 0)
    two = answers.get(2)
    assert two is not None
    answers.applied(event(events.ORDER_PLACED, 9, {"id": 9, "user_id": 1, "product_id": 1,
                                                    "quantity": 1, "unit_price": 10.0}))
    assert answers.bytes == two.size


def test_a_bound_of_zero_keeps_nothing() -> None:
    answers = Answers(most_bytes=0)
    keep_like_the_service(answers, 1, 0)
    assert len(answers) == 0 and answers.bytes == 0
