"""The pause between retries: the relay's and the consumer's while the bus is unreachable, and
a supervised task's before it is started again (tasks.py).

It doubles from SHORTEST up to LONGEST and starts again from SHORTEST after a success: a
bus back within a blink is seen at once, one down for long is asked every two seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

SHORTEST = 0.01
LONGEST = 2.0

Sleep = Callable[[float], Awaitable[None]]


class Backoff:
    def __init__(self, sleep: Sleep = asyncio.sleep) -> None:
        """`sleep` pauses (tests pass a fake that records the pauses)."""
        self._sleep = sleep
        self.pause = SHORTEST

    async def wait(self) -> None:
        """After a failure: pause, and make the next pause twice as long (at most LONGEST)."""
        await self._sleep(self.next_pause())

    def next_pause(self) -> float:
        """The pause to take now (a thread waits it out itself); the next one is twice as
        long, at most LONGEST."""
        pause, self.pause = self.pause, min(self.pause * 2, LONGEST)
        return pause

    async def wait_longest(self) -> None:
        """Pause the longest: for a failure that retrying soon will not mend."""
        await self._sleep(LONGEST)

    def reset(self) -> None:
        """After a success, or before a new round of attempts: the shortest pause next."""
        self.pause = SHORTEST
