"""The sandbox's own bus: the `bus` service's SQLite log, over HTTP. Nothing to install.

    POST /events   [event, ...]                 -> {"positions", "appended", "head"}
    GET  /events?after=P&limit=N&wait_ms=W[&types=T,U]
                                   -> {"head", "log", "through", "events": [{"position", "event"}]}

The only place these addresses are written on the client side. How the bytes travel is the
caller's `Exchange`: the services' kept-alive peer client (runtime/platform/wire.py, with
its spans), or the CLI's standard-library client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import msgspec

from msshop.bus.interface import BusUnavailable, Exchange, Page
from msshop.contracts.limits import MAX_ID

T = TypeVar("T")

WAIT_SLACK = 5.0  # seconds a long-poll may take beyond its wait before it counts as lost
MAX_WAIT = 30.0  # the bus holds a read at most this long


class Appended(msgspec.Struct, frozen=True):
    positions: list[int]
    appended: int
    head: int


class EventLogBus:
    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        self._page = msgspec.json.Decoder(Page)
        self._appended = msgspec.json.Decoder(Appended)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def append(self, events: Sequence[bytes]) -> list[int]:
        status, body = await self._exchange("POST", "/events", b"[" + b",".join(events) + b"]",
                                            None)
        if status != 200:
            raise BusUnavailable(f"the bus refused the events: {_error(body)}")
        return self._decode(self._appended, body).positions

    async def read(self, after: int, limit: int, wait: float = 0.0,
                   types: frozenset[str] | None = None) -> Page:
        wait = min(max(wait, 0.0), MAX_WAIT)
        only = f"&types={','.join(sorted(types))}" if types is not None else ""
        status, body = await self._exchange(
            "GET", f"/events?after={after}&limit={limit}&wait_ms={round(wait * 1000)}{only}",
            None, wait + WAIT_SLACK if wait else None)
        if status != 200:
            raise BusUnavailable(f"the bus answered HTTP {status}: {_error(body)}")
        return self._decode(self._page, body)

    async def head(self) -> int:
        return (await self.read(MAX_ID, 1)).head

    @staticmethod
    def _decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
        try:
            return decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BusUnavailable(f"the bus gave an answer that is not one: {exc}") from None


def _error(body: bytes) -> str:
    """The error a bus answered with, in its words if it sent JSON."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body[:200].decode(errors="replace")
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, str) else body[:200].decode(errors="replace")
