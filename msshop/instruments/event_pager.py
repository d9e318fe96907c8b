"""`msshop events`: the bus's log from the CLI, a page of it or --follow by long-poll,
through the Bus interface (so it reads whatever bus the sandbox runs)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import msgspec

from msshop.bus.interface import Bus
from msshop.contracts import events
from msshop.contracts.errors import MsshopError

FOLLOW_WAIT = 1.0  # seconds each long-poll waits while following
PAGE = 1000  # the most events asked for at once


def read(bus: Bus, after: int, limit: int, follow: bool) -> Iterator[tuple[int, events.Event]]:
    """(position, event) from the bus after `after`: `limit` of them, or with `follow`
    every one until Ctrl-C."""
    position = after
    with asyncio.Runner() as runner:
        try:
            while True:
                page = runner.run(bus.read(position, PAGE if follow else min(limit, PAGE),
                                           FOLLOW_WAIT if follow else 0.0))
                for item in page.events:
                    yield item.position, _decoded(item.position, item.event)
                    position = item.position
                    if not follow:
                        limit -= 1
                        if limit == 0:
                            return
                if not follow and (not page.events or position >= page.head):
                    return
        except KeyboardInterrupt:
            return


def _decoded(position: int, raw: msgspec.Raw) -> events.Event:
    try:
        return events.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MsshopError(f"bus position {position} holds something that is not an event "
                          f"({exc}); see: msshop deadletters") from None
