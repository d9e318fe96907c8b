"""A choreographed saga's step, from what each participant has done for it
(contracts/saga_progress.py: `msshop sagas` and the dashboard say the same): every
combination a choreographed saga can be in."""

from __future__ import annotations

import pytest

from msshop.contracts.saga_progress import step_reached


@pytest.mark.parametrize(("done", "expected"), [
    ((False, None, False, None, False), ("products", "placed; the stock not taken yet")),
    ((True, None, False, None, False), ("orders", "the stock refused; not rejected yet")),
    ((True, 1, False, None, False), ("users", "the stock taken; the credit not taken yet")),
    ((True, 1, True, 1, False),
     ("orders", "the stock and the credit taken; not confirmed yet")),
    ((True, 1, True, None, False),
     ("products", "the credit refused; the stock not given back yet")),
    ((True, 0, True, None, True),
     ("orders", "the credit refused, the stock given back; not rejected yet")),
])
def test_each_step_names_whose_move_it_is(done: tuple[bool, int | None, bool, int | None,
                                                       bool],
                                          expected: tuple[str, str]) -> None:
    """(products applied OrderPlaced, its stock take held 1 / given back 0 / none,
    users applied StockTaken, its credit take held, products applied CreditRefused)."""
    step, waits_for = step_reached(*done)
    assert (waits_for, step) == expected
