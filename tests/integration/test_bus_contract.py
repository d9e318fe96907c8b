"""One test case run against every Bus implementation, the way eventsourcing runs one
recorder test against every recorder: the in-memory fake the unit tests lean on (so that
it stays true to the real thing), and the sandbox's own log (the `bus` service, a real
process) through both of its carriers, the services' Peers (wire.py) and the CLI's
ShopClient (http1.py), each showing the users service's credential (the events are its own), and
NATS JetStream (a real nats-server the sandbox starts), appending as the users service and
reading as the sandbox's owner (the rights of each are tests/e2e/test_trust.py's)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest

from msshop.bus.interface import Bus, Page
from msshop.contracts import events
from msshop.contracts.credentials import bearer, service_credential
from msshop.contracts.events import Delivered
from msshop.instruments.client import ShopClient
from msshop.runtime.platform.context import ServiceContext
from tests.conftest import Sandbox
from tests.fakes import MemoryBus, run

BUSES = ["memory", "log, through the CLI's client", "log, through the services' peers",
         "nats jetstream"]
_ids = iter(range(1_000_000, 2_000_000))  # users no other test has; the read model takes them


class Subject:
    """A bus to test, and a way to append to the same log from elsewhere (another client,
    in another thread: the CLI's carrier blocks its own loop while it waits)."""

    def __init__(self, kind: str, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.memory = MemoryBus() if kind == "memory" else None
        self.nats = kind.startswith("nats")
        self.sandbox: Sandbox | None = (
            None if kind == "memory" else
            request.getfixturevalue("shared_nats_sandbox" if self.nats else "shared_sandbox"))

    @asynccontextmanager
    async def bus(self) -> AsyncIterator[Bus]:
        if self.memory is not None:
            yield self.memory
            return
        assert self.sandbox is not None
        if self.nats:
            client = ShopClient(self.sandbox.state)
            reader, writer = client.bus(), client.bus(as_service="users")
            try:
                yield AppendAs(writer, reader)
            finally:
                await reader.close()
                await writer.close()
            return
        if self.kind.endswith("client"):
            yield ShopClient(self.sandbox.state).bus(as_service="users")
            return
        state = self.sandbox.state
        context = ServiceContext(name="users", db_path=Path("unused.db"),
                                 peer_urls={"bus": state.services["bus"].url},
                                 credential=service_credential(state.token, "users"))
        peers = context.peers()
        await peers.start()
        try:
            yield context.bus(peers)
        finally:
            await peers.close()

    def append_later(self, delay: float, body: bytes) -> Callable[[], None]:
        """Append `body` after `delay` seconds from elsewhere; returns a join()."""
        if self.memory is not None:
            memory = self.memory
            task = asyncio.get_running_loop().call_later(
                delay, lambda: asyncio.ensure_future(memory.append([body])))
            return lambda: task.cancel()
        assert self.sandbox is not None
        state = self.sandbox.state
        timer = threading.Timer(delay, lambda: asyncio.run(
            _append_once(ShopClient(state).bus(as_service="users"), body)))
        timer.start()
        return timer.join


class AppendAs:
    """One bus seen by two of its clients: the users service appends, the owner reads (on
    NATS nobody may do both: the services that record events append, and only the query
    service and the owner read)."""

    def __init__(self, writer: Bus, reader: Bus) -> None:
        self.writer, self.reader = writer, reader

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def append(self, events: Sequence[bytes]) -> list[int]:
        return await self.writer.append(events)

    async def read(self, after: int, limit: int, wait: float = 0.0,
                   types: frozenset[str] | None = None) -> Page:
        return await self.reader.read(after, limit, wait, types)

    async def head(self) -> int:
        return await self.reader.head()


async def _append_once(bus: Bus, body: bytes) -> None:
    try:
        await bus.append([body])
    finally:
        await bus.close()


@pytest.fixture(params=BUSES)
def subject(request: pytest.FixtureRequest) -> Subject:
    return Subject(request.param, request)


def signed_up() -> bytes:
    n = next(_ids)
    return events.encode(events.make(events.USER_SIGNED_UP, "users", n, 1, {
        "id": n, "email": f"bus-{n}@example.com", "name": f"Bus {n}"}, None))


def event_id(raw: bytes | msgspec.Raw) -> str:
    return events.decode(raw).id


def test_append_gives_each_event_the_next_position_and_moves_the_head(subject: Subject
                                                                       ) -> None:
    async def test() -> None:
        async with subject.bus() as bus:
            before = await bus.head()
            positions = await bus.append([signed_up() for _ in range(3)])
            assert positions == [before + 1, before + 2, before + 3]
            assert await bus.head() == before + 3

    run(test)


def test_an_event_appended_again_keeps_its_first_position(subject: Subject) -> None:
    async def test() -> None:
        async with subject.bus() as bus:
            first, second = signed_up(), signed_up()
            positions = await bus.append([first, second])
            head = await bus.head()
            assert await bus.append([second, first]) == positions[::-1]
            assert await bus.head() == head, "nothing new was stored"

    run(test)


def test_read_after_a_position_gives_the_events_in_order_as_sent(subject: Subject) -> None:
    async def test() -> None:
        async with subject.bus() as bus:
            sent = [signed_up() for _ in range(5)]
            positions = await bus.append(sent)
            page = await bus.read(positions[0] - 1, 3)
            assert [item.position for item in page.events] == positions[:3]
            assert [event_id(item.event) for item in page.events] == \
                [event_id(body) for body in sent[:3]]
            assert page.head >= positions[-1]
            rest = await bus.read(positions[2], 10)
            assert [item.position for item in rest.events][:2] == positions[3:]

    run(test)


def test_a_read_beyond_the_head_is_empty_and_says_the_head(subject: Subject) -> None:
    async def test() -> None:
        async with subject.bus() as bus:
            head = await bus.head()
            page = await bus.read(head, 10)
            assert page.events == [] and page.head == head

    run(test)


def test_a_waiting_read_returns_as_soon_as_an_event_is_appended(subject: Subject) -> None:
    async def test() -> None:
        async with subject.bus() as bus:
            head = await bus.head()
            body = signed_up()
            join = subject.append_later(0.1, body)
            started = time.monotonic()
            page = await bus.read(head, 10, wait=5.0)
            took = time.monotonic() - started
            join()
            assert [event_id(item.event) for item in page.events] == [event_id(body)]
            assert took < 2.5, f"the read waited {took:.2f} s for an append 0.1 s away"

    run(test, timeout=10)


def test_a_waiting_read_with_nothing_new_returns_empty_after_the_wait(subject: Subject
                                                                      ) -> None:
    async def test() -> None:
        async with subject.bus() as bus:
            head = await bus.head()
            started = time.monotonic()
            page = await bus.read(head, 10, wait=0.3)
            took = time.monotonic() - started
            assert page.events == [] and page.head == head
            assert 0.25 <= took < 2.0

    run(test, timeout=10)


async def read_as_a_reader_of(bus: Bus, types: frozenset[str], after: int, head: int
                              ) -> tuple[list[Delivered], int]:
    """What a reader of `types` is handed from `after` until it has looked at `head`, read
    as the consumer reads (from the last event handed, or how far the bus looked if
    further), and the position it ends at."""
    handed: list[Delivered] = []
    position = after
    for _ in range(100):
        if position >= head:
            break
        page = await bus.read(position, 2, types=types)
        handed += page.events
        position = max([position, page.through, *(item.position for item in page.events)])
    return handed, position


def test_a_reader_of_some_types_is_handed_those_and_moves_past_the_rest(subject: Subject
                                                                         ) -> None:
    """The log buses hand only the types asked for; NATS hands every event for now (the
    reader skips them: jetstream.py). Either way a reader of types it finds none of still
    reaches the head, and one of the types appended gets each of them, in order."""
    async def test() -> None:
        async with subject.bus() as bus:
            before = await bus.head()
            sent = [signed_up() for _ in range(5)]
            positions = await bus.append(sent)
            head = positions[-1]
            handed, position = await read_as_a_reader_of(
                bus, frozenset({events.ORDER_PLACED}), before, head)
            assert position >= head, "looked at every event, though none was its"
            if not subject.nats:
                assert handed == []
            handed, position = await read_as_a_reader_of(
                bus, frozenset({events.USER_SIGNED_UP, events.ORDER_PLACED}), before, head)
            assert position >= head
            assert [item.position for item in handed] == positions
            assert [event_id(item.event) for item in handed] == [event_id(b) for b in sent]

    run(test)


def test_a_waiting_reader_of_other_types_answers_an_append_having_looked_past_it(
        subject: Subject) -> None:
    """A long-poll of types the append is not of still answers it, soon (the log bus
    holds it TYPED_GATHER for one of its types), saying it looked past it (`through`):
    its reader's position reaches the head, as "caught up" counts it, not a wait behind."""
    async def test() -> None:
        async with subject.bus() as bus:
            head = await bus.head()
            body = signed_up()
            join = subject.append_later(0.1, body)
            started = time.monotonic()
            page = await bus.read(head, 10, wait=5.0, types=frozenset({events.ORDER_PLACED}))
            took = time.monotonic() - started
            join()
            assert max([page.through, *(item.position for item in page.events)]) == head + 1
            if not subject.nats:
                assert page.events == [] and page.through == head + 1
            assert took < 2.5, f"the read waited {took:.2f} s for an append 0.1 s away"

    run(test, timeout=10)


@pytest.mark.parametrize(("types", "says"), [
    ("OrderPlaced,Nope,Bogus", "'Bogus', 'Nope' are not event types"),
    ("orderplaced", "'orderplaced' is not an event type"),
    ("OrderPlaced,", "has an empty entry"),
    ("", "has an empty entry"),
])
def test_the_log_bus_refuses_types_not_in_the_catalogue_naming_them(
        shared_sandbox: Sandbox, types: str, says: str) -> None:
    client = ShopClient(shared_sandbox.state)
    status, answer = client.exchange("bus", "GET", f"/events?after=0&types={types}",
                                     headers=bearer(shared_sandbox.state.token))
    assert status == 422, answer
    assert says in answer["error"], answer
    if "empty entry" not in says:
        assert "the types are CreditGivenBack, CreditRefused, CreditTaken, " in \
            answer["error"], answer
    assert answer["service"] == "bus"
