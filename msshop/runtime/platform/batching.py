"""Coalescing: requests that arrive while the previous batch is busy go out together.

A lone request starts its batch at once (on the next turn of the event loop, so requests
that arrived in the same turn join it): no timer, nothing added to its latency. Under load,
everything that queued up while a batch was waiting on the network or the disk goes in the
next one, so one call to a dependency and one commit serve many requests (what DataLoader
does for calls and group commit does for transactions).

Each batch runs in the context of its first request, so the spans of the work it does
(client calls, the insert) belong to that request's trace; the others learn which trace
that was from the Batched they get back.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from msshop.runtime.platform.tracing import current_trace_id

T = TypeVar("T")
R = TypeVar("R")

Handler = Callable[[list[T]], Awaitable[Sequence[R | Exception]]]


@dataclass(frozen=True)
class Batched(Generic[R]):
    value: R
    size: int  # requests in the batch
    trace_id: str | None  # the trace of the batch's first request: it has the batch's spans
    first: bool  # this request's trace is that one


class Coalescer(Generic[T, R]):
    """`await submit(item)` returns `handler(batch)`'s answer for that item, or raises the
    exception the handler gave for it (or raised for the whole batch)."""

    def __init__(self, handler: Handler[T, R], limit: int) -> None:
        self.handler = handler
        self.limit = limit
        self._queue: list[tuple[T, asyncio.Future[Batched[R]], contextvars.Context]] = []
        self._draining = False
        self._task: asyncio.Task[None] | None = None  # referenced, so it is not collected

    async def submit(self, item: T) -> Batched[R]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Batched[R]] = loop.create_future()
        self._queue.append((item, future, contextvars.copy_context()))
        if not self._draining:
            self._draining = True
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:self.limit], self._queue[self.limit:]
                items = [item for item, _, _ in batch]
                first_context = batch[0][2]
                trace_id = first_context.run(current_trace_id)
                try:
                    answers: Sequence[R | Exception] = await asyncio.create_task(
                        self._handle(items), context=first_context)
                    if len(answers) != len(batch):
                        raise RuntimeError(f"the batch handler gave {len(answers)} answers "
                                           f"for {len(batch)} requests")
                except Exception as exc:  # the whole batch failed the same way
                    answers = [exc] * len(batch)
                except BaseException:  # cancelled (or worse): nobody may wait forever
                    for _, future, _ in [*batch, *self._queue]:
                        future.cancel()
                    self._queue = []
                    raise
                for index, ((_, future, _), answer) in enumerate(zip(batch, answers,
                                                                     strict=True)):
                    if future.done():  # its caller went away; the work was done all the same
                        continue
                    if isinstance(answer, Exception):
                        future.set_exception(answer)
                    else:
                        future.set_result(Batched(answer, len(batch), trace_id, index == 0))
        finally:
            self._draining = False

    async def _handle(self, items: list[T]) -> Sequence[R | Exception]:
        return await self.handler(items)
