"""Answers kept: a user's replicated answer, read once from the read model, kept in memory
until an event changes it.

The read model is the query service's file; this is a copy of a few of its answers, exact
and never older than the file. The consumer applies events and the service reads answers on
one thread, each without yielding, so no read can fall between an event's write and the
forgetting here: an answer is forgotten in the same step that applies the event.
- UserSignedUp: that user's answer; OrderPlaced: the buyer's.
- ProductCreated or ProductUpdated: every answer (a title may change in any of them;
  product events are rare beside orders, so finding whose is not worth an index read).
- A rebuild that swaps the read model in: every answer.

Why (issue 14, docs/benchmarks.md): reading a user's rows, turning them into an answer and
naming their events cost ~60 us of a ~110 us request; kept, the answer is one dictionary
look-up and its bytes copied.
"""

from __future__ import annotations

from typing import Any

import msgspec

from msshop.contracts import events
from msshop.contracts.answers import Buyer, OrderLine
from msshop.contracts.events import Received

MOST_BYTES = 32 * 1024 * 1024  # all answers kept: the oldest is let go past this
LARGEST = 1024 * 1024  # an answer bigger than this is read from the file each time


class Kept(msgspec.Struct, frozen=True):
    """One user's answer as the read model gave it at `position`."""

    user: msgspec.Raw  # encoded Buyer
    orders: msgspec.Raw  # encoded list[OrderLine]
    rows: int
    sources: dict[str, Any]
    position: int  # the read model's position when it was read


class _Buyer(msgspec.Struct):
    user_id: int  # an OrderPlaced's data: only whose it is


_BUYER = msgspec.json.Decoder(_Buyer)


class Answers:
    """Kept answers by user id, the oldest let go first once MOST_BYTES are kept."""

    def __init__(self, most_bytes: int = MOST_BYTES) -> None:
        self.most_bytes = most_bytes
        self._kept: dict[int, Kept] = {}
        self._bytes = 0

    def get(self, user_id: int) -> Kept | None:
        return self._kept.get(user_id)

    def keep(self, user_id: int, user: Buyer, orders: list[OrderLine],
             sources: dict[str, Any], position: int) -> Kept:
        encoded = msgspec.json.encode(orders)
        kept = Kept(msgspec.Raw(msgspec.json.encode(user)), msgspec.Raw(encoded),
                    len(orders) + 1, sources, position)
        if len(encoded) > LARGEST:
            return kept
        self.forget(user_id)
        self._kept[user_id] = kept
        self._bytes += len(encoded)
        while self._bytes > self.most_bytes:
            self.forget(next(iter(self._kept)))
        return kept

    def forget(self, user_id: int) -> None:
        kept = self._kept.pop(user_id, None)
        if kept is not None:
            self._bytes -= len(kept.orders)

    def forget_all(self) -> None:
        self._kept.clear()
        self._bytes = 0

    def applied(self, event: Received) -> None:
        """`event` was just written to the read model: forget the answers it changes."""
        if event.type == events.ORDER_PLACED:
            self.forget(_BUYER.decode(event.data).user_id)
        elif event.type == events.USER_SIGNED_UP:
            self.forget(event.aggregate_id)
        else:
            self.forget_all()

    def __len__(self) -> int:
        return len(self._kept)
