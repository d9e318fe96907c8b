"""For in-process unit tests of one component (never for our services or the broker): a
bus in memory that can be told to fail, sleeps that record instead of waiting, and `run`,
which runs an async test with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import msgspec

from msshop.bus.interface import BusUnavailable, Page
from msshop.contracts.events import Delivered

T = TypeVar("T")


class MemoryBus:
    """The Bus interface over a list: idempotent append by event id, global positions from
    1, reads that wait for an append. `failures` makes the next calls raise BusUnavailable."""

    def __init__(self) -> None:
        self.log: list[bytes] = []
        self.ids: dict[str, int] = {}
        self.failures: list[str] = []  # messages of the next calls to fail, in order
        self.calls: list[str] = []  # "append N" / "read AFTER LIMIT WAIT", as they came
        self._appended = asyncio.Event()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def _fail_if_told(self) -> None:
        if self.failures:
            raise BusUnavailable(self.failures.pop(0))

    async def append(self, events: Sequence[bytes]) -> list[int]:
        self.calls.append(f"append {len(events)}")
        self._fail_if_told()
        positions = []
        for body in events:
            event_id = msgspec.json.decode(body)["id"]
            if event_id not in self.ids:
                self.log.append(body)
                self.ids[event_id] = len(self.log)
            positions.append(self.ids[event_id])
        woken, self._appended = self._appended, asyncio.Event()
        woken.set()
        return positions

    async def read(self, after: int, limit: int, wait: float = 0.0,
                   types: frozenset[str] | None = None) -> Page:
        self.calls.append(f"read {after} {limit} {wait:g}")
        self._fail_if_told()
        if len(self.log) <= after and wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._appended.wait(), timeout=wait)
        events: list[Delivered] = []
        # with types, how far it looked (as the log bus, with no bound on its scan); without,
        # not said (0), as a bus that hands every event may
        through = 0 if types is None else max(after, len(self.log))
        for position, body in enumerate(self.log[after:], start=after + 1):
            if types is None or msgspec.json.decode(body)["type"] in types:
                events.append(Delivered(position, msgspec.Raw(body)))
                if len(events) == limit:
                    through = 0 if types is None else position
                    break
        return Page(len(self.log), events, through=through)

    async def head(self) -> int:
        self._fail_if_told()
        return len(self.log)


class RecordingSleep:
    """An asyncio.sleep that returns at once and remembers how long it was asked to wait."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        await asyncio.sleep(0)


class WatchingSleep(RecordingSleep, Generic[T]):
    """A RecordingSleep that also looks at something at each pause (`watch()`, kept in
    `seen`): what a component shows while it waits to retry."""

    def __init__(self, watch: Callable[[], T]) -> None:
        super().__init__()
        self.watch = watch
        self.seen: list[T] = []

    async def __call__(self, seconds: float) -> None:
        self.seen.append(self.watch())
        await super().__call__(seconds)


class AnswerLostBus(MemoryBus):
    """A MemoryBus whose next `lost` appends store the events and then fail, as when the
    bus's answer never reached the caller."""

    def __init__(self, lost: int) -> None:
        super().__init__()
        self.lost = lost

    async def append(self, events: Sequence[bytes]) -> list[int]:
        positions = await super().append(events)
        if self.lost > 0:
            self.lost -= 1
            raise BusUnavailable("the bus's answer was lost")
        return positions


def run(test: Callable[[], Awaitable[None]], timeout: float = 3) -> None:
    """Run an async test; fail it if it takes longer than `timeout` (asyncio.wait_for would
    not do: a cancellation swallowed inside the test would look like success)."""

    async def bounded() -> None:
        task = asyncio.ensure_future(test())
        done, _ = await asyncio.wait([task], timeout=timeout)
        if not done:
            task.cancel()
            raise AssertionError(f"the test did not finish within {timeout} s")
        task.result()

    asyncio.run(bounded())
