"""The bus consumer in process: the query service's read model in a real SQLite file, a bus
in memory, a sleep that only records. (Duplicates and reordering in the projection itself
are tests/integration/test_projection.py's.)"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from msshop.contracts import events
from msshop.contracts.answers import ReplicaFreshness
from msshop.contracts.events import Delivered, Received
from msshop.runtime.platform import consumer as consumer_module
from msshop.runtime.platform.consumer import Apply, Consumer
from msshop.runtime.platform.db import open_database
from msshop.runtime.platform.tracing import Tracer
from msshop.runtime.services.query import MIGRATIONS, projection
from tests.fakes import MemoryBus, RecordingSleep, WatchingSleep, run


class Interrupt(BaseException):
    """Like KeyboardInterrupt: not an error of the event, and not the consumer's to catch."""


def signed_up(user_id: int) -> events.Event:
    return events.make(events.USER_SIGNED_UP, "users", user_id, 1,
                       {"id": user_id, "email": f"u{user_id}@example.com", "name": f"U{user_id}"},
                       None)


def delivered(*pairs: tuple[int, events.Event | bytes]) -> list[Delivered]:
    return [Delivered(position, msgspec.Raw(e if isinstance(e, bytes) else events.encode(e)))
            for position, e in pairs]


def numbered(*recorded: events.Event) -> list[Delivered]:
    return delivered(*enumerate(recorded, start=1))


def read_model(tmp_path: Path) -> sqlite3.Connection:
    return open_database(tmp_path / "query.db", MIGRATIONS)


def consumer_of(conn: sqlite3.Connection, bus: MemoryBus | None = None,
                apply: Apply = projection.apply,
                sleep: RecordingSleep | None = None) -> Consumer:
    return Consumer("query", lambda: conn, bus or MemoryBus(), apply,
                    sleep=sleep or RecordingSleep())


def users(conn: sqlite3.Connection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT id FROM users_replica ORDER BY id")]


def stored_position(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT position FROM consumer_offsets WHERE consumer = 'query'"
                       ).fetchone()
    return None if row is None else int(row[0])


def dead_letters(conn: sqlite3.Connection) -> dict[int, tuple[str | None, str | None, str]]:
    """position -> (event id, type, reason)"""
    return {position: (event_id, kind, reason) for position, event_id, kind, reason in
            conn.execute("SELECT position, event_id, type, reason FROM dead_letters")}


def reads(bus: MemoryBus) -> list[str]:
    return [call for call in bus.calls if call.startswith("read ")]


async def eventually(condition: Callable[[], bool], timeout: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.001)




# --- apply_batch: one transaction for the rows and the position -----------------------------

def test_apply_batch_writes_the_rows_and_the_position_in_one_transaction(tmp_path: Path
                                                                         ) -> None:
    conn = read_model(tmp_path)
    consumer = consumer_of(conn)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    consumer.apply_batch(numbered(signed_up(1), signed_up(2)))
    conn.set_trace_callback(None)
    kinds = [s.split()[0] for s in statements]
    assert kinds[0] == "BEGIN" and kinds[-1] == "COMMIT"
    assert kinds.count("BEGIN") == 1 and kinds.count("COMMIT") == 1
    assert any("consumer_offsets" in s for s in statements[1:-1])
    assert users(conn) == [1, 2] and stored_position(conn) == 2
    assert (consumer.position, consumer.applied, consumer.dead) == (2, 2, 0)


def test_an_apply_that_raises_an_error_is_dead_lettered_and_the_batch_goes_on(
        tmp_path: Path) -> None:
    def apply(conn: sqlite3.Connection, event: Received, position: int) -> None:
        if position == 2:
            raise ValueError("a bug in the projection")
        projection.apply(conn, event, position)

    conn = read_model(tmp_path)
    consumer = consumer_of(conn, apply=apply)
    broken = signed_up(2)
    consumer.apply_batch(numbered(signed_up(1), broken, signed_up(3)))
    assert users(conn) == [1, 3]
    assert dead_letters(conn) == {2: (broken.id, events.USER_SIGNED_UP,
                                      "failed to apply: ValueError: a bug in the projection")}
    assert stored_position(conn) == 3
    assert (consumer.position, consumer.applied, consumer.dead) == (3, 2, 1)


def test_an_interrupt_mid_batch_propagates_and_leaves_neither_rows_nor_position(
        tmp_path: Path) -> None:
    interrupt_at = {3}

    def apply(conn: sqlite3.Connection, event: Received, position: int) -> None:
        projection.apply(conn, event, position)
        if position in interrupt_at:
            raise Interrupt

    conn = read_model(tmp_path)
    consumer = consumer_of(conn, apply=apply)
    log = numbered(*(signed_up(n) for n in (1, 2, 3, 4)))
    consumer.apply_batch(log[:1])
    with pytest.raises(Interrupt):
        consumer.apply_batch(log[1:])
    assert users(conn) == [1], "the interrupted batch wrote nothing"
    assert stored_position(conn) == 1 and consumer.position == 1
    assert dead_letters(conn) == {} and consumer.dead == 0
    interrupt_at.clear()
    consumer.apply_batch(log[1:])  # read again from the old position
    assert users(conn) == [1, 2, 3, 4] and stored_position(conn) == 4


def test_a_dead_lettered_event_leaves_none_of_its_writes_behind(tmp_path: Path) -> None:
    def apply(conn: sqlite3.Connection, event: Received, position: int) -> None:
        projection.apply(conn, event, position)
        if position == 2:
            raise ValueError("failed after writing")

    conn = read_model(tmp_path)
    consumer = consumer_of(conn, apply=apply)
    consumer.apply_batch(numbered(signed_up(1), signed_up(2), signed_up(3)))
    assert list(dead_letters(conn)) == [2]
    assert users(conn) == [1, 3], "the dead-lettered event's row was kept"


# --- poison ----------------------------------------------------------------------------------

def test_poison_goes_to_dead_letters_with_its_reason_and_the_batch_goes_on(tmp_path: Path
                                                                           ) -> None:
    conn = read_model(tmp_path)
    consumer = consumer_of(conn)
    unknown = msgspec.structs.replace(signed_up(2), type="UserDeleted")
    envelope_only = b'{"id": "e-3", "type": "UserSignedUp"}'
    garbage = b"\xff\xfe not json"
    consumer.apply_batch(delivered((1, signed_up(1)), (2, unknown), (3, envelope_only),
                                   (4, garbage), (5, signed_up(5))))
    dead = dead_letters(conn)
    assert dead[2] == (unknown.id, "UserDeleted", "unknown event type 'UserDeleted'")
    assert dead[3] == ("e-3", "UserSignedUp",
                       "not an event: Object missing required field `source`")
    assert dead[4][:2] == (None, None) and dead[4][2].startswith("not an event: ")
    assert conn.execute("SELECT body FROM dead_letters WHERE position = 4").fetchone() == \
        (garbage,), "the body is kept as it came"
    assert users(conn) == [1, 5]
    assert stored_position(conn) == 5
    assert (consumer.dead, consumer.applied) == (3, 2)
    assert consumer.health()["dead_letters"] == 3


def test_the_dead_letter_count_and_the_position_survive_a_restart(tmp_path: Path) -> None:
    async def test() -> None:
        conn = read_model(tmp_path)
        consumer_of(conn).apply_batch(delivered((1, b"poison"), (2, signed_up(2))))
        bus = MemoryBus()
        bus.log = [b"poison", events.encode(signed_up(2))]  # the log they came from
        again = consumer_of(conn, bus)
        assert await again.catch_up() == 0
        assert (again.position, again.dead) == (2, 1)

    run(test)


# --- following the bus -----------------------------------------------------------------------

async def two_of_three_applied(tmp_path: Path
                               ) -> tuple[sqlite3.Connection, MemoryBus, list[events.Event]]:
    """Three events on the bus, of which an earlier process applied the first two."""
    conn = read_model(tmp_path)
    recorded = [signed_up(n) for n in (1, 2, 3)]
    bus = MemoryBus()
    await bus.append([events.encode(e) for e in recorded])
    consumer_of(conn).apply_batch(numbered(*recorded[:2]))
    return conn, bus, recorded


def test_start_resumes_from_the_stored_position(tmp_path: Path) -> None:
    async def test() -> None:
        conn, bus, _ = await two_of_three_applied(tmp_path)
        again = consumer_of(conn, bus)
        await again.start()
        try:
            assert await again.wait_for(3, timeout=0.5)
            assert reads(bus)[0] == "read 2 1000 0", "read from the stored position"
            assert again.applied == 1
            assert users(conn) == [1, 2, 3] and stored_position(conn) == 3
        finally:
            await again.close()

    run(test)


def test_start_catches_up_and_then_says_it_is_caught_up(tmp_path: Path) -> None:
    async def test() -> None:
        conn = read_model(tmp_path)
        bus = MemoryBus()
        await bus.append([events.encode(signed_up(n)) for n in (1, 2, 3)])
        seen_while_applying: list[int | None] = []

        def apply(conn: sqlite3.Connection, event: Received, position: int) -> None:
            seen_while_applying.append(consumer.catching_up_to)
            projection.apply(conn, event, position)

        consumer = consumer_of(conn, bus, apply=apply)
        await consumer.start()
        try:
            assert await consumer.wait_for(3, timeout=0.5)
            assert seen_while_applying == [3, 3, 3], "catching up to the head it first saw"
            await eventually(lambda: consumer.listening)
            freshness = consumer.freshness()
            assert freshness["catching_up_to"] is None
            assert (freshness["position"], freshness["bus_head"], freshness["behind"]) == \
                (3, 3, 0)
            assert freshness["caught_up"] and freshness["bus_error"] is None
            assert freshness["head_seen_ms_ago"] is not None
            assert freshness["last_applied_ms_ago"] is not None
        finally:
            await consumer.close()
        assert not consumer.listening

    run(test)


def test_a_later_append_is_applied_by_the_long_poll(tmp_path: Path) -> None:
    async def test() -> None:
        conn = read_model(tmp_path)
        bus = MemoryBus()
        consumer = consumer_of(conn, bus)
        await consumer.start()
        try:
            await eventually(lambda: consumer.listening)
            assert consumer.catching_up_to is None, "nothing to catch up with"
            later = signed_up(1)
            appended = time.monotonic()
            await bus.append([events.encode(later)])
            assert await consumer.wait_for(1, timeout=0.5)
            assert time.monotonic() - appended < 0.5, "woken by the append, not a timeout"
            assert reads(bus)[:2] == ["read 0 1000 0", "read 0 1000 10"]
            assert users(conn) == [1]
            assert len(consumer.lag_since(later.occurred_at)) == 1
            assert consumer.freshness()["caught_up"]
        finally:
            await consumer.close()

    run(test)


def test_while_the_bus_fails_the_consumer_says_so_backs_off_and_recovers(tmp_path: Path
                                                                         ) -> None:
    async def test() -> None:
        conn = read_model(tmp_path)
        bus = MemoryBus()
        await bus.append([events.encode(signed_up(n)) for n in (1, 2)])
        bus.failures = ["bus is down"] * 3
        consumer: Consumer
        sleep: WatchingSleep[ReplicaFreshness] = WatchingSleep(lambda: consumer.freshness())
        consumer = consumer_of(conn, bus, sleep=sleep)
        await consumer.start()
        try:
            assert await consumer.wait_for(2, timeout=0.5)
            assert sleep.pauses == pytest.approx([0.01, 0.02, 0.04])
            assert [(f["bus_error"], f["listening"], f["caught_up"]) for f in sleep.seen] == \
                [("bus is down", False, False)] * 3
            assert all(f["catching_up_to"] is None for f in sleep.seen), \
                "no head known yet"
            await eventually(lambda: consumer.listening)
            assert consumer.freshness()["bus_error"] is None
            assert consumer.freshness()["caught_up"]

            # a second outage, while following: the backoff starts again from the shortest
            await bus.append([events.encode(signed_up(3))])  # ends the long-poll in flight
            bus.failures = ["the bus answered HTTP 503: busy"] * 2  # the next reads fail
            assert await consumer.wait_for(3, timeout=0.5)
            await eventually(lambda: len(sleep.pauses) == 5 and consumer.listening)
            assert sleep.pauses[3:] == pytest.approx([0.01, 0.02])
            assert [(f["bus_error"], f["position"]) for f in sleep.seen[3:]] == \
                [("the bus answered HTTP 503: busy", 3)] * 2
            await bus.append([events.encode(signed_up(4))])
            assert await consumer.wait_for(4, timeout=0.5)
            assert consumer.freshness()["bus_error"] is None
            assert users(conn) == [1, 2, 3, 4]
        finally:
            await consumer.close()

    run(test)


def test_once_the_bus_is_back_the_consumer_stops_reporting_its_error(tmp_path: Path) -> None:
    async def test() -> None:
        conn = read_model(tmp_path)
        bus = MemoryBus()
        consumer = consumer_of(conn, bus)
        await consumer.start()
        try:
            await eventually(lambda: consumer.listening)
            await bus.append([events.encode(signed_up(1))])  # ends the long-poll in flight
            bus.failures = ["bus is down"]  # the next read fails, the one after succeeds
            assert await consumer.wait_for(1, timeout=0.5)
            await eventually(lambda: not bus.failures and consumer.listening)
            await asyncio.sleep(0.05)
            assert consumer.freshness()["bus_error"] is None, "the bus answers again"
            assert consumer.freshness()["caught_up"]
        finally:
            await consumer.close()

    run(test)


def test_the_consumer_backoff_is_capped_at_two_seconds(tmp_path: Path) -> None:
    async def test() -> None:
        bus, sleep = MemoryBus(), RecordingSleep()
        bus.failures = ["bus is down"] * 10
        consumer = consumer_of(read_model(tmp_path), bus, sleep=sleep)
        await consumer.start()
        try:
            await eventually(lambda: consumer.listening)
            assert sleep.pauses == pytest.approx(
                [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.0, 2.0])
        finally:
            await consumer.close()

    run(test)


def test_wait_for_is_true_once_the_position_is_applied_and_false_on_timeout(tmp_path: Path
                                                                            ) -> None:
    async def test() -> None:
        consumer = consumer_of(read_model(tmp_path))
        log = numbered(signed_up(1), signed_up(2))
        waiting = asyncio.create_task(consumer.wait_for(2, timeout=1))
        consumer.apply_batch(log[:1])
        await asyncio.sleep(0.01)
        assert not waiting.done(), "position 1 is not yet 2"
        consumer.apply_batch(log[1:])
        assert await waiting is True
        assert await consumer.wait_for(1, timeout=0) is True, "already applied"
        started = time.monotonic()
        assert await consumer.wait_for(3, timeout=0.05) is False
        assert time.monotonic() - started >= 0.05

    run(test)


# --- catch_up (rebuilds) ---------------------------------------------------------------------

def test_catch_up_applies_everything_and_runs_then_inside_the_last_transaction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # small reads and one read per transaction: five events take three transactions
    monkeypatch.setattr(consumer_module, "BATCH", 2)
    monkeypatch.setattr(consumer_module, "CATCH_UP_READ", 2)
    monkeypatch.setattr(consumer_module, "CATCH_UP_TRANSACTION", 1)

    async def test() -> None:
        conn = read_model(tmp_path)
        bus = MemoryBus()
        await bus.append([events.encode(signed_up(n)) for n in range(1, 6)])
        consumer = consumer_of(conn, bus)
        inside: list[tuple[bool, int | None, list[int]]] = []

        def then(conn: sqlite3.Connection) -> None:
            inside.append((conn.in_transaction, stored_position(conn), users(conn)))
            conn.execute("UPDATE users_replica SET name = 'swapped'")

        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        assert await consumer.catch_up(then) == 5
        conn.set_trace_callback(None)
        assert inside == [(True, 5, [1, 2, 3, 4, 5])], "once, after the last events"
        assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")] == \
            ["BEGIN IMMEDIATE", "COMMIT"] * 3
        assert statements.index("UPDATE users_replica SET name = 'swapped'") > \
            len(statements) - 4, "then() runs in the last transaction, before its commit"
        assert conn.execute("SELECT DISTINCT name FROM users_replica").fetchall() == \
            [("swapped",)]
        assert (consumer.position, consumer.head, stored_position(conn)) == (5, 5, 5)
        assert not consumer.lags, "a catch-up records no replication lag"

    run(test)


def test_catch_up_starts_from_the_stored_position(tmp_path: Path) -> None:
    async def test() -> None:
        conn, bus, _ = await two_of_three_applied(tmp_path)
        assert await consumer_of(conn, bus).catch_up() == 1
        assert reads(bus)[0] == "read 2 1000 0"
        assert stored_position(conn) == 3

    run(test)


def test_a_then_that_raises_takes_the_last_transaction_with_it(tmp_path: Path) -> None:
    async def test() -> None:
        conn = read_model(tmp_path)
        bus = MemoryBus()
        await bus.append([events.encode(signed_up(n)) for n in (1, 2)])
        consumer = consumer_of(conn, bus)

        def then(conn: sqlite3.Connection) -> None:
            raise RuntimeError("the swap failed")

        with pytest.raises(RuntimeError, match="the swap failed"):
            await consumer.catch_up(then)
        assert users(conn) == [] and stored_position(conn) is None
        assert consumer.position == 0

    run(test)


def test_catch_up_on_an_empty_bus_applies_nothing_and_still_runs_then(tmp_path: Path) -> None:
    async def test() -> None:
        conn = read_model(tmp_path)
        ran: list[bool] = []
        consumer = consumer_of(conn)
        assert await consumer.catch_up(lambda conn: ran.append(conn.in_transaction)) == 0
        assert ran == [True]
        assert consumer.position == 0

    run(test)


def test_a_long_poll_the_bus_never_answers_is_not_called_listening(tmp_path: Path) -> None:
    """A frozen bus (SIGSTOP) keeps the socket open: the consumer must not say it listens
    and is caught up while events pile up in the outboxes (issue 9, finding 7)."""
    consumer = consumer_of(read_model(tmp_path))
    consumer.listening = True
    consumer.head_seen_at = time.time() - 3  # a long-poll opened 3 s ago: normal
    assert consumer.freshness()["caught_up"] is True
    assert consumer.freshness()["listening"] is True
    consumer.head_seen_at = time.time() - 13  # LONG_POLL is 10 s: nobody answered
    fresh = consumer.freshness()
    assert fresh["caught_up"] is False and fresh["listening"] is False
    assert fresh["bus_error"] == "the bus has not answered for 13 s"


# --- the spans of followed writes: one per event applied, and only once it is committed --

def followed(user_id: int) -> events.Event:
    """A write someone follows (`buy --trace`): its event carries the trace and its span."""
    return events.make(events.USER_SIGNED_UP, "users", user_id, 1,
                       {"id": user_id, "email": f"u{user_id}@example.com", "name": f"U{user_id}"},
                       f"{user_id:032x}", parent_span=f"{user_id:016x}")


def traced_consumer(conn: sqlite3.Connection, apply: Apply) -> tuple[Consumer, Tracer]:
    tracer = Tracer("query")
    return Consumer("query", lambda: conn, MemoryBus(), apply, sleep=RecordingSleep(),
                    tracer=tracer, db_name="query.db"), tracer


def applied_spans(tracer: Tracer) -> list[int]:
    return sorted(int(span["trace_id"], 16) for span in tracer.finished
                  if span["name"] == f"apply {events.USER_SIGNED_UP}")


def test_a_batch_applied_again_event_by_event_records_each_apply_once(tmp_path: Path) -> None:
    def apply(conn: sqlite3.Connection, event: Received, position: int) -> None:
        if position == 3:
            raise ValueError("a bug in the projection")
        projection.apply(conn, event, position)

    conn = read_model(tmp_path)
    consumer, tracer = traced_consumer(conn, apply)
    consumer.apply_batch(numbered(followed(1), followed(2), followed(3), followed(4)))
    assert users(conn) == [1, 2, 4]
    assert applied_spans(tracer) == [1, 2, 4], "the first try's spans were rolled back too"


def test_a_batch_whose_transaction_fails_records_no_apply(tmp_path: Path) -> None:
    def apply(conn: sqlite3.Connection, event: Received, position: int) -> None:
        if position == 2:
            raise KeyboardInterrupt  # not the event's fault: the whole batch is undone
        projection.apply(conn, event, position)

    conn = read_model(tmp_path)
    consumer, tracer = traced_consumer(conn, apply)
    with pytest.raises(KeyboardInterrupt):
        consumer.apply_batch(numbered(followed(1), followed(2)))
    assert users(conn) == [] and applied_spans(tracer) == []
    consumer.apply = projection.apply
    consumer.apply_batch(numbered(followed(1), followed(2)))
    assert applied_spans(tracer) == [1, 2]


def test_a_consumer_of_some_types_moves_past_the_others_and_stores_that_now_and_then(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A saga's step consumer asks the bus for its types only: events of others are never
    handed to it, yet its position follows the bus's (Page.through), so it is caught up
    at the head; the position is stored once it is IDLE_STORE ahead of the file."""
    monkeypatch.setattr(consumer_module, "IDLE_STORE", 4)

    async def test() -> None:
        conn = read_model(tmp_path)
        bus = MemoryBus()
        await bus.append([events.encode(signed_up(n)) for n in (1, 2, 3)])
        handed: list[str] = []

        def apply(conn: sqlite3.Connection, event: Received, position: int) -> None:
            handed.append(event.type)

        consumer = Consumer("steps", lambda: conn, bus, apply, sleep=RecordingSleep(),
                            types=frozenset({events.ORDER_PLACED}))
        await consumer.start()
        try:
            await eventually(lambda: consumer.listening and consumer.position == 3)
            assert consumer.freshness()["caught_up"] and handed == []
            assert steps_position(conn) is None, "3 events on: not stored yet"
            await bus.append([events.encode(signed_up(n)) for n in (4, 5)])
            await eventually(lambda: consumer.position == 5)
            assert steps_position(conn) == 5, "5 events on: stored"
            assert handed == [] and consumer.freshness()["caught_up"]
            assert consumer.applied == 5, "gone through: the bus skipped them for it"
        finally:
            await consumer.close()
        assert all(call.startswith("read ") or call.startswith("append ")
                   for call in bus.calls)

    run(test)


def steps_position(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT position FROM consumer_offsets WHERE consumer = 'steps'"
                       ).fetchone()
    return None if row is None else int(row[0])
