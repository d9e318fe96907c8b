"""The query service's kept answers (query/kept.py): what each event lets go, and the
bound on what is kept."""

from __future__ import annotations

import msgspec

from msshop.contracts import events
from msshop.contracts.answers import OrderLine, order_line
from msshop.contracts.events import Received
from msshop.runtime.services.query.kept import LARGEST, Answers


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


def test_a_user_event_lets_go_of_that_user_and_a_product_event_of_everyone() -> None:
    answers = Answers()
    keep(answers, 1)
    keep(answers, 2)
    answers.applied(event(events.USER_SIGNED_UP, 1, {"id": 1, "email": "a@b.c", "name": "A"}))
    assert answers.get(1) is None and answers.get(2) is not None
    answers.applied(event(events.PRODUCT_UPDATED, 1, {"id": 1, "title": "Cap", "price": 1.0}))
    assert len(answers) == 0


def test_the_oldest_answers_go_past_the_bound_and_a_huge_one_is_never_kept() -> None:
    one = len(msgspec.json.encode(orders(10)))
    answers = Answers(most_bytes=3 * one)
    for user_id in range(1, 6):
        keep(answers, user_id, 10)
    assert [u for u in range(1, 6) if answers.get(u) is not None] == [3, 4, 5]
    huge = LARGEST // len(msgspec.json.encode(orders(1))) + 1
    keep(answers, 9, huge)
    assert answers.get(9) is None and len(answers) == 3
