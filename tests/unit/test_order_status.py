"""Issue 26: how compare and verify judge an order's status (instruments/checking.py)."""

from __future__ import annotations

from typing import Any

from msshop.contracts.answers import order_line
from msshop.instruments.checking import differences, settling

CONFIRMED = order_line(7, 3, "Hat", 2, 500)
PENDING = order_line(7, 3, "Hat", 2, 0, "pending")
REJECTED = order_line(7, 3, "Hat", 2, 0, "rejected", "out of stock")


def test_an_answer_that_says_no_status_is_read_as_confirmed() -> None:
    """A program of your own written before the saga sends no status nor reason."""
    old: dict[str, Any] = {k: v for k, v in CONFIRMED.items() if k not in ("status", "reason")}
    assert differences([CONFIRMED], [old]) == []  # type: ignore[list-item]
    assert differences([REJECTED], [old]) == [  # type: ignore[list-item]
        "order 7 unit_price is 5.0, expected 0.0", "order 7 total is 10.0, expected 0.0",
        "order 7 status is 'confirmed', expected 'rejected'",
        "order 7 reason is None, expected 'out of stock'"]


def test_an_order_pending_in_one_answer_and_decided_in_the_other_is_in_flight() -> None:
    assert settling([CONFIRMED], [PENDING]) == {
        7: "order 7 is pending here, confirmed in orders: its outcome is not applied here yet"}
    assert settling([PENDING], [REJECTED]) == {
        7: "order 7 is rejected here, pending when the monolith read it: decided in between"}


def test_a_status_that_is_not_the_orders_is_not_in_flight() -> None:
    assert settling([CONFIRMED], [REJECTED]) == {}, "decided both ways: a real difference"
    assert settling([CONFIRMED], [order_line(7, 3, "Hat", 5, 0, "pending")]) == {}, \
        "another quantity: not the same order seen at another moment"
    assert settling([CONFIRMED], [CONFIRMED]) == {}
