"""Answers kept: a user's replicated answer, read once from the read model, kept in memory
until an event changes it.

The read model is the query service's file; this is a copy of a few of its answers, exact
and never older than the file. The consumer applies events and the service reads answers on
one thread, each without yielding, so no read can fall between an event's write and the
forgetting here: an answer is forgotten in the same step that applies the event.
- UserSignedUp: that user's answer; OrderPlaced, OrderConfirmed, OrderRejected: the
  buyer's.
- ProductCreated or ProductUpdated: every answer (a title may change in any of them;
  product events are rare beside orders, so finding whose is not worth an index read).
- A saga's steps (StockTaken ...): none (the read model skips them).
- A rebuild that swaps the read model in: every answer.

Why (issue 14, docs/benchmarks.md): reading a user's rows, turning them into an answer and
naming their events cost ~60 us of a ~110 us request; kept, the answer is one dictionary
look-up and its bytes copied.

The bound counts what an answer really holds (issue 23: counting only the orders' bytes, a
user without orders counted 2 bytes, and 200,000 of them held ~190 MiB): its two encodings
(made exactly as long as their JSON: msgspec's own encode leaves up to half its buffer
unused), the events named for its trace, and a fixed ENTRY for the Python objects around
them. The count is fixed when the answer is kept, so letting it go is one subtraction.
"""

from __future__ import annotations

from typing import Any

import msgspec

from msshop.contracts import events
from msshop.contracts.answers import Buyer, OrderLine
from msshop.contracts.config import KEPT_MIB
from msshop.contracts.events import Received
from msshop.contracts.status import KeptHealth

MIB = 1024 * 1024
MOST_BYTES = KEPT_MIB * MIB  # all answers kept (the setting query.kept_mib): the oldest go
LARGEST = 1024 * 1024  # an answer bigger than this is read from the file each time
# The Python objects an answer holds beside its JSON, measured on CPython 3.11: with
# sys.getsizeof, the Kept (80), its two Raws (48 each), the two bytes objects' headers (33
# each), the sources dict (184) with its kinds dict (184) and named list (64 + 8 a name),
# the user id (28) and the dictionary's slot; tracemalloc counts ~865 in all, and the
# process's VmRSS grows by ~940 an answer (200,000 kept without orders, pymalloc's rounding
# included). tests/unit/test_kept.py measures them again and fails if ENTRY falls short.
ENTRY = 1024
SOURCE = 112  # per event named for its trace: a 3-tuple (64), its position (28), a slot (8)


class Kept(msgspec.Struct, frozen=True):
    """One user's answer as the read model gave it at `position`."""

    user: msgspec.Raw  # encoded Buyer
    orders: msgspec.Raw  # encoded list[OrderLine]
    rows: int
    sources: dict[str, Any]
    position: int  # the read model's position when it was read
    size: int  # the bytes it holds, as counted against the bound


def size_of(user: bytes, orders: bytes, sources: dict[str, Any]) -> int:
    """What an answer holds in memory: its JSON, the events it names and ENTRY."""
    return len(user) + len(orders) + ENTRY + SOURCE * len(sources.get("named", ()))


class _Buyer(msgspec.Struct):
    user_id: int  # an order event's data: only whose it is


ORDER_EVENTS = frozenset((events.ORDER_PLACED, events.ORDER_CONFIRMED, events.ORDER_REJECTED))


_BUYER = msgspec.json.Decoder(_Buyer)


class Answers:
    """Kept answers by user id, the oldest let go first once `most_bytes` are held."""

    def __init__(self, most_bytes: int = MOST_BYTES) -> None:
        self.most_bytes = most_bytes
        self._kept: dict[int, Kept] = {}
        self._bytes = 0
        self._encoder = msgspec.json.Encoder()
        self._buffer = bytearray()

    def _encode(self, value: Any) -> bytes:
        """`value` as JSON in a bytes object of exactly its length."""
        self._encoder.encode_into(value, self._buffer)
        encoded = bytes(self._buffer)
        if len(self._buffer) > LARGEST:
            self._buffer = bytearray()  # a huge answer's buffer is not held on to
        return encoded

    @property
    def bytes(self) -> int:
        """What the kept answers hold, as counted against `most_bytes`."""
        return self._bytes

    def get(self, user_id: int) -> Kept | None:
        return self._kept.get(user_id)

    def keep(self, user_id: int, user: Buyer, orders: list[OrderLine],
             sources: dict[str, Any], position: int) -> Kept:
        encoded_user, encoded = self._encode(user), self._encode(orders)
        size = size_of(encoded_user, encoded, sources)
        kept = Kept(msgspec.Raw(encoded_user), msgspec.Raw(encoded), len(orders) + 1,
                    sources, position, size)
        if len(encoded) > LARGEST or size > self.most_bytes:
            return kept
        self.forget(user_id)
        self._kept[user_id] = kept
        self._bytes += size
        while self._bytes > self.most_bytes:
            self.forget(next(iter(self._kept)))
        return kept

    def forget(self, user_id: int) -> None:
        kept = self._kept.pop(user_id, None)
        if kept is not None:
            self._bytes -= kept.size

    def forget_all(self) -> None:
        self._kept.clear()
        self._bytes = 0

    def applied(self, event: Received) -> None:
        """`event` was just written to the read model: forget the answers it changes."""
        if event.type in ORDER_EVENTS:
            self.forget(_BUYER.decode(event.data).user_id)
        elif event.type == events.USER_SIGNED_UP:
            self.forget(event.aggregate_id)
        elif event.type not in events.STEP_VERSION:  # a step changes no answer
            self.forget_all()

    def health(self) -> KeptHealth:
        return {"answers": len(self._kept), "bytes": self._bytes, "most_bytes": self.most_bytes}

    def __len__(self) -> int:
        return len(self._kept)
