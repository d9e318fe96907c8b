"""The Coalescer in process: who goes in which batch, and what each caller gets back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from msshop.runtime.platform.batching import Batched, Coalescer
from msshop.runtime.platform.tracing import Tracer, current_trace_id
from tests.fakes import run

Answers = Sequence[int | Exception]


class GatedHandler:
    """Doubles each item; the first batch waits for `gate`, so that requests queue behind
    it. Remembers each batch and the trace it ran in."""

    def __init__(self, answer: Callable[[list[int]], Answers] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.traces: list[str | None] = []
        self.entered = asyncio.Event()  # the first batch is in the handler
        self.gate = asyncio.Event()
        self.answer = answer or (lambda items: [item * 2 for item in items])

    async def __call__(self, items: list[int]) -> Answers:
        self.batches.append(list(items))
        self.traces.append(current_trace_id())
        self.entered.set()
        await self.gate.wait()
        return self.answer(items)




def test_a_lone_request_goes_at_once_as_a_batch_of_one() -> None:
    async def test() -> None:
        handler = GatedHandler()
        handler.gate.set()
        coalescer: Coalescer[int, int] = Coalescer(handler, limit=10)
        assert await coalescer.submit(21) == Batched(42, size=1, trace_id=None, first=True)
        assert handler.batches == [[21]]

    run(test)


def test_requests_submitted_in_the_same_turn_go_in_one_batch() -> None:
    async def test() -> None:
        handler = GatedHandler()
        handler.gate.set()
        coalescer: Coalescer[int, int] = Coalescer(handler, limit=10)
        results = await asyncio.gather(*(coalescer.submit(n) for n in (1, 2, 3)))
        assert [r.value for r in results] == [2, 4, 6]
        assert handler.batches == [[1, 2, 3]]
        assert [(r.size, r.first) for r in results] == [(3, True), (3, False), (3, False)]

    run(test)


def test_requests_that_arrive_while_a_batch_is_busy_go_together_in_the_next() -> None:
    async def test() -> None:
        handler = GatedHandler()
        coalescer: Coalescer[int, int] = Coalescer(handler, limit=10)
        first = asyncio.create_task(coalescer.submit(1))
        await handler.entered.wait()
        queued = [asyncio.create_task(coalescer.submit(n)) for n in (2, 3, 4)]
        await asyncio.sleep(0)  # they are in the queue now, behind the busy batch
        assert handler.batches == [[1]]
        handler.gate.set()
        assert (await first).size == 1
        assert [(r.value, r.size) for r in await asyncio.gather(*queued)] == \
            [(4, 3), (6, 3), (8, 3)]
        assert handler.batches == [[1], [2, 3, 4]]

    run(test)


def test_the_limit_splits_a_long_queue_into_several_batches() -> None:
    async def test() -> None:
        handler = GatedHandler()
        coalescer: Coalescer[int, int] = Coalescer(handler, limit=2)
        first = asyncio.create_task(coalescer.submit(1))
        await handler.entered.wait()
        queued = [asyncio.create_task(coalescer.submit(n)) for n in (2, 3, 4, 5, 6)]
        await asyncio.sleep(0)
        handler.gate.set()
        await first
        assert [r.size for r in await asyncio.gather(*queued)] == [2, 2, 2, 2, 1]
        assert handler.batches == [[1], [2, 3], [4, 5], [6]]

    run(test)


def test_an_exception_given_for_one_item_reaches_only_its_caller() -> None:
    async def test() -> None:
        def answer(items: list[int]) -> Answers:
            return [ValueError(f"odd {n}") if n % 2 else n * 2 for n in items]

        handler = GatedHandler(answer)
        handler.gate.set()
        coalescer: Coalescer[int, int] = Coalescer(handler, limit=10)
        results = await asyncio.gather(*(coalescer.submit(n) for n in (1, 2, 3, 4)),
                                       return_exceptions=True)
        assert [str(r) if isinstance(r, BaseException) else r.value for r in results] == \
            ["odd 1", 4, "odd 3", 8]
        assert isinstance(results[0], ValueError)
        assert handler.batches == [[1, 2, 3, 4]]

    run(test)


def test_a_handler_that_raises_fails_the_whole_batch_for_every_caller() -> None:
    async def test() -> None:
        def answer(items: list[int]) -> Answers:
            raise ConnectionError("the dependency is down")

        handler = GatedHandler(answer)
        handler.gate.set()
        coalescer: Coalescer[int, int] = Coalescer(handler, limit=10)
        results = await asyncio.gather(*(coalescer.submit(n) for n in (1, 2, 3)),
                                       return_exceptions=True)
        assert all(isinstance(r, ConnectionError) and str(r) == "the dependency is down"
                   for r in results), results
        # the next request starts afresh
        handler.answer = lambda items: [n * 2 for n in items]
        assert (await coalescer.submit(5)).value == 10

    run(test)


def test_a_handler_with_the_wrong_number_of_answers_fails_every_caller_clearly() -> None:
    async def test() -> None:
        handler = GatedHandler(lambda items: [0])
        handler.gate.set()
        coalescer: Coalescer[int, int] = Coalescer(handler, limit=10)
        results = await asyncio.gather(*(coalescer.submit(n) for n in (1, 2, 3)),
                                       return_exceptions=True)
        for result in results:
            assert isinstance(result, RuntimeError)
            assert str(result) == "the batch handler gave 1 answers for 3 requests"

    run(test)


def test_a_batch_runs_in_the_trace_of_its_first_request_and_tells_the_others() -> None:
    async def test() -> None:
        tracer = Tracer("test")
        handler = GatedHandler()
        handler.gate.set()
        coalescer: Coalescer[int, int] = Coalescer(handler, limit=10)

        async def traced(name: str, item: int) -> tuple[str, Batched[int]]:
            with tracer.span(name) as span:
                return span["trace_id"], await coalescer.submit(item)

        async def untraced(item: int) -> tuple[None, Batched[int]]:
            return None, await coalescer.submit(item)

        results = await asyncio.gather(traced("first", 1), traced("second", 2), untraced(3))
        (first_trace, first), (second_trace, second), (_, third) = results
        assert first_trace != second_trace
        assert handler.traces == [first_trace], "the batch's work is in the first's trace"
        assert [(r.trace_id, r.first, r.size) for r in (first, second, third)] == [
            (first_trace, True, 3), (first_trace, False, 3), (first_trace, False, 3)]

    run(test)


def test_a_batch_whose_first_request_has_no_trace_says_so() -> None:
    async def test() -> None:
        tracer = Tracer("test")
        handler = GatedHandler()
        handler.gate.set()
        coalescer: Coalescer[int, int] = Coalescer(handler, limit=10)

        async def traced(item: int) -> Batched[int]:
            with tracer.span("late"):
                return await coalescer.submit(item)

        results = await asyncio.gather(coalescer.submit(1), traced(2))
        assert [(r.trace_id, r.first) for r in results] == [(None, True), (None, False)]
        assert handler.traces == [None]

    run(test)


def test_a_cancelled_handler_does_not_leave_its_callers_waiting_forever() -> None:
    async def test() -> None:
        def answer(items: list[int]) -> Answers:
            raise asyncio.CancelledError

        handler = GatedHandler(answer)
        handler.gate.set()
        coalescer: Coalescer[int, int] = Coalescer(handler, limit=10)
        callers = [asyncio.create_task(coalescer.submit(n)) for n in (1, 2)]
        _, waiting = await asyncio.wait(callers, timeout=0.1)
        for task in waiting:
            task.cancel()
        assert not waiting, "callers still waiting after their batch ended"

    run(test)
