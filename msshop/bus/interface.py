"""What a bus is to the code that uses it: append a batch, read after a position (with an
optional wait), the head. Positions are global, start at 1 and have no gaps (but in a log
`msshop repair bus` rebuilt, where a position no outbox held stays empty); an append is
idempotent by event id (a repeat keeps its first position)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import msgspec

from msshop.contracts.errors import MsshopError
from msshop.contracts.events import Delivered


class BusUnavailable(MsshopError):
    """The bus could not be reached, or refused the request; the message says which."""


class Page(msgspec.Struct, frozen=True):
    """Events after a position, in order, the bus's head when it answered, and which log
    this is (a log replaced or emptied has another identity; "" if the bus has none).
    `through`: how far the bus looked; every event up to it was looked at, and those not
    handed were not of the types asked for (0: not said; the last event is as far as it
    is known to have looked). A reader of a few types moves its position there, so that
    one with nothing to do still advances (and is caught up at the head)."""

    head: int
    events: list[Delivered]
    log: str = ""
    through: int = 0


class Bus(Protocol):
    """A log of events with global positions. Implementations are resources: `start` once
    before use, `close` when done (both may do nothing)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, events: Sequence[bytes]) -> list[int]:
        """Append encoded events, in order; each one's position (a repeat: its first).
        Raises BusUnavailable if the bus did not store them."""
        ...

    async def read(self, after: int, limit: int, wait: float = 0.0,
                   types: frozenset[str] | None = None) -> Page:
        """Up to `limit` events after position `after`. With `wait` (seconds), a read that
        finds nothing is held until an append or the wait is over (a long-poll). `types`:
        only events of these types (None: all); a bus may hand others too (the reader
        skips them), and says in `Page.through` how far it looked."""
        ...

    async def head(self) -> int:
        """The last position (0: an empty log)."""
        ...


#: How an HTTP bus client is carried: (method, path, body, timeout) -> (status, body).
#: Raises BusUnavailable when the bus cannot be reached or fails (5xx).
Exchange = Callable[[str, str, bytes | None, float | None], Awaitable[tuple[int, bytes]]]
