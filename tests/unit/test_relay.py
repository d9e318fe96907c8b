"""The outbox and its relay in process: a real SQLite file, a bus in memory, a sleep that
only records."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import msgspec
import pytest

from msshop.contracts import events
from msshop.contracts.status import OutboxHealth
from msshop.runtime.platform import outbox as outbox_module
from msshop.runtime.platform.db import open_database
from msshop.runtime.platform.outbox import OUTBOX_SCHEMA, OUTBOX_TRACE_COLUMN, Outbox
from tests.fakes import AnswerLostBus, MemoryBus, RecordingSleep, WatchingSleep, run


def signed_up(user_id: int, version: int = 1) -> events.Event:
    return events.make(events.USER_SIGNED_UP, "users", user_id, version,
                       {"id": user_id, "email": f"u{user_id}@example.com", "name": f"U{user_id}"},
                       None)


def open_outbox(tmp_path: Path, bus: MemoryBus, sleep: RecordingSleep | None = None
                ) -> tuple[sqlite3.Connection, Outbox]:
    conn = open_database(tmp_path / "users.db", [OUTBOX_SCHEMA, OUTBOX_TRACE_COLUMN])
    return conn, Outbox("users", lambda: conn, bus, sleep=sleep or RecordingSleep())


def record(outbox: Outbox, conn: sqlite3.Connection, *recorded: events.Event) -> None:
    with outbox.transaction(conn):
        outbox.add(conn, recorded)


def ids_on(bus: MemoryBus) -> list[str]:
    return [msgspec.json.decode(body)["id"] for body in bus.log]


def rows(conn: sqlite3.Connection) -> list[tuple[str, int | None, bool]]:
    """(event id, position, sent) of every outbox row, in order."""
    return [(event_id, position, sent_at is not None) for event_id, position, sent_at in
            conn.execute("SELECT event_id, position, sent_at FROM outbox ORDER BY seq")]




def test_events_added_in_a_transaction_wait_in_the_outbox_as_pending_rows(tmp_path: Path
                                                                          ) -> None:
    bus = MemoryBus()
    conn, outbox = open_outbox(tmp_path, bus)
    first, second = signed_up(1), signed_up(2)
    record(outbox, conn, first, second)
    assert rows(conn) == [(first.id, None, False), (second.id, None, False)]
    assert outbox.pending() == 2
    assert bus.calls == [], "nothing is sent until the relay runs"
    assert conn.execute("SELECT body FROM outbox WHERE event_id = ?",
                        (first.id,)).fetchone() == (events.encode(first),)


def test_events_of_a_write_that_rolls_back_are_never_recorded(tmp_path: Path) -> None:
    conn, outbox = open_outbox(tmp_path, MemoryBus())
    with pytest.raises(ZeroDivisionError), outbox.transaction(conn):
        outbox.add(conn, [signed_up(1)])
        raise ZeroDivisionError
    assert outbox.pending() == 0


def test_flush_sends_pending_events_in_order_and_marks_them_with_their_positions(
        tmp_path: Path) -> None:
    async def test() -> None:
        bus = MemoryBus()
        conn, outbox = open_outbox(tmp_path, bus)
        recorded = [signed_up(n) for n in (1, 2, 3)]
        record(outbox, conn, *recorded[:2])
        record(outbox, conn, recorded[2])
        await outbox.flush()
        assert ids_on(bus) == [e.id for e in recorded]
        assert bus.calls == ["append 3"], "one batch for everything pending"
        assert rows(conn) == [(e.id, n, True) for n, e in enumerate(recorded, start=1)]
        assert outbox.pending() == 0
        assert outbox.health() == {"pending": 0, "last_position": 3, "error": None,
                                   "failing_since": None}
        await outbox.flush()
        assert bus.calls == ["append 3"], "nothing pending: the bus is not asked"

    run(test)


def test_while_the_bus_fails_flush_retries_with_doubling_backoff_capped_at_two_seconds(
        tmp_path: Path) -> None:
    async def test() -> None:
        bus, sleep = MemoryBus(), RecordingSleep()
        conn, outbox = open_outbox(tmp_path, bus, sleep)
        record(outbox, conn, signed_up(1))
        bus.failures = ["bus is down"] * 10
        await outbox.flush()
        assert sleep.pauses == pytest.approx(
            [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.0, 2.0])
        assert bus.calls == ["append 1"] * 11
        assert len(bus.log) == 1 and outbox.pending() == 0

    run(test)


def test_health_shows_the_error_while_the_bus_fails_and_clears_it_after_success(
        tmp_path: Path) -> None:
    async def test() -> None:
        bus = MemoryBus()
        outbox: Outbox
        sleep: WatchingSleep[OutboxHealth] = WatchingSleep(lambda: outbox.health())
        conn, outbox = open_outbox(tmp_path, bus, sleep)
        record(outbox, conn, signed_up(1), signed_up(2))
        bus.failures = ["bus is down", "bus is down", "the bus refused the events: full"]
        before = time.time()
        await outbox.flush()
        assert [(h["pending"], h["error"]) for h in sleep.seen] == [
            (2, "bus is down"), (2, "bus is down"), (2, "the bus refused the events: full")]
        since = {h["failing_since"] for h in sleep.seen}
        assert len(since) == 1, "failing since the first failure, whatever the message"
        (failing_since,) = since
        assert failing_since is not None and before <= failing_since <= time.time()
        assert outbox.health() == {"pending": 0, "last_position": 2, "error": None,
                                   "failing_since": None}
        assert outbox.error is None and outbox.failing_since is None

    run(test)


def test_backoff_starts_again_from_the_shortest_pause_after_a_success(tmp_path: Path) -> None:
    async def test() -> None:
        bus, sleep = MemoryBus(), RecordingSleep()
        conn, outbox = open_outbox(tmp_path, bus, sleep)
        record(outbox, conn, signed_up(1))
        bus.failures = ["bus is down"] * 3
        await outbox.flush()
        record(outbox, conn, signed_up(2))
        bus.failures = ["bus is down"] * 2
        await outbox.flush()
        assert sleep.pauses == pytest.approx([0.01, 0.02, 0.04, 0.01, 0.02])

    run(test)


def test_nothing_is_lost_or_duplicated_across_an_outage(tmp_path: Path) -> None:
    async def test() -> None:
        bus = MemoryBus()
        conn, outbox = open_outbox(tmp_path, bus)
        recorded = [signed_up(n) for n in range(1, 6)]
        record(outbox, conn, *recorded[:2])
        bus.failures = ["bus is down"] * 4
        flushing = asyncio.create_task(outbox.flush())
        record(outbox, conn, *recorded[2:])  # more writes while the bus is down
        await flushing
        await outbox.flush()
        assert ids_on(bus) == [e.id for e in recorded]
        assert rows(conn) == [(e.id, n, True) for n, e in enumerate(recorded, start=1)]

    run(test)


def test_a_row_already_on_the_bus_sent_again_keeps_its_first_position(tmp_path: Path) -> None:
    """The process died after the bus stored a batch and before the rows were marked sent:
    the relay sends them again, and the bus keeps each event once, where it was."""

    async def test() -> None:
        bus = MemoryBus()
        conn, outbox = open_outbox(tmp_path, bus)
        other, first, second = signed_up(9), signed_up(1), signed_up(2)
        record(outbox, conn, first, second)
        await bus.append([events.encode(other), events.encode(first)])  # before the "crash"
        await outbox.flush()
        assert ids_on(bus) == [other.id, first.id, second.id]
        assert rows(conn) == [(first.id, 2, True), (second.id, 3, True)]

    run(test)


def test_a_batch_whose_answer_was_lost_is_sent_again_and_kept_once(tmp_path: Path) -> None:
    async def test() -> None:
        bus, sleep = AnswerLostBus(lost=2), RecordingSleep()
        conn, outbox = open_outbox(tmp_path, bus, sleep)
        recorded = [signed_up(n) for n in (1, 2, 3)]
        record(outbox, conn, *recorded)
        await outbox.flush()
        assert bus.calls == ["append 3"] * 3
        assert ids_on(bus) == [e.id for e in recorded]
        assert rows(conn) == [(e.id, n, True) for n, e in enumerate(recorded, start=1)]
        assert sleep.pauses == pytest.approx([0.01, 0.02])

    run(test)


def test_flush_sends_at_most_batch_rows_at_a_time(tmp_path: Path) -> None:
    async def test() -> None:
        bus = MemoryBus()
        conn, outbox = open_outbox(tmp_path, bus)
        batch = outbox_module.BATCH
        recorded = [signed_up(n) for n in range(1, 2 * batch + 501)]
        record(outbox, conn, *recorded)
        await outbox.flush()
        assert bus.calls == [f"append {batch}", f"append {batch}", "append 500"]
        assert ids_on(bus) == [e.id for e in recorded]
        assert outbox.pending() == 0

    run(test)


def test_health_counts_what_waits_and_the_last_position_sent_batch_by_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What /health says (pending, last position) as the relay sends batch after batch,
    found from the oldest row waiting: the count of every unsent row, the position of the
    last one sent, at every step; and rows added meanwhile are counted too."""
    async def test() -> None:
        bus = MemoryBus()
        conn, outbox = open_outbox(tmp_path, bus)
        assert (outbox.health()["pending"], outbox.health()["last_position"]) == (0, None)
        record(outbox, conn, *[signed_up(n) for n in range(1, 8)])
        assert (outbox.health()["pending"], outbox.health()["last_position"]) == (7, None)
        monkeypatch.setattr(outbox_module, "BATCH", 3)
        said: list[tuple[int, int | None]] = []
        sent = bus.append

        async def watched(bodies: list[bytes]) -> list[int]:
            said.append((outbox.health()["pending"], outbox.health()["last_position"]))
            if len(said) == 2:  # an event recorded while the relay is at work
                record(outbox, conn, signed_up(8))
            return await sent(bodies)

        monkeypatch.setattr(bus, "append", watched)
        await outbox.flush()
        assert said == [(7, None), (4, 3), (2, 6)]
        assert (outbox.health()["pending"], outbox.health()["last_position"]) == (0, 8)
        counted = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        assert counted.fetchone() == (0,)

    run(test)


def test_published_gives_the_position_once_the_event_is_sent(tmp_path: Path) -> None:
    async def test() -> None:
        bus = MemoryBus()
        conn, outbox = open_outbox(tmp_path, bus)
        first, second = signed_up(1), signed_up(2)
        record(outbox, conn, first, second)
        waiting = asyncio.create_task(outbox.published(second.id, timeout=1))
        await asyncio.sleep(0)
        assert not waiting.done()
        await outbox.flush()
        assert await waiting == 2
        assert await outbox.published(first.id, timeout=0) == 1

    run(test)


def test_published_gives_none_for_an_unknown_event_or_when_the_time_is_up(tmp_path: Path
                                                                          ) -> None:
    async def test() -> None:
        conn, outbox = open_outbox(tmp_path, MemoryBus())
        pending = signed_up(1)
        record(outbox, conn, pending)
        started = time.monotonic()
        assert await outbox.published("no-such-event", timeout=1) is None
        assert time.monotonic() - started < 0.05, "an unknown event is not waited for"
        assert await outbox.published(pending.id, timeout=0.05) is None
        assert time.monotonic() - started >= 0.05

    run(test)


def test_latest_event_is_the_last_recorded_for_the_entity(tmp_path: Path) -> None:
    async def test() -> None:
        conn, outbox = open_outbox(tmp_path, MemoryBus())
        first, renamed, other = signed_up(1), signed_up(1, version=2), signed_up(2)
        record(outbox, conn, first, renamed)
        record(outbox, conn, other)
        assert outbox.latest_event("user", 1) == {
            "id": renamed.id, "type": events.USER_SIGNED_UP, "position": None}
        await outbox.flush()
        assert outbox.latest_event("user", 1) == {
            "id": renamed.id, "type": events.USER_SIGNED_UP, "position": 2}
        assert outbox.latest_event("user", 2) == {
            "id": other.id, "type": events.USER_SIGNED_UP, "position": 3}
        assert outbox.latest_event("user", 99) is None
        assert outbox.latest_event("product", 1) is None

    run(test)


def relays() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "users-relay"]


def test_the_relay_sends_rows_left_behind_as_soon_as_it_starts(tmp_path: Path) -> None:
    async def test() -> None:
        bus = MemoryBus()
        conn, outbox = open_outbox(tmp_path, bus)
        left = signed_up(1)
        record(outbox, conn, left)  # no relay running: as after a crash
        await outbox.start()
        try:
            assert await outbox.published(left.id, timeout=0.5) == 1
        finally:
            await outbox.close()

    run(test)


def test_a_commit_wakes_the_relay_without_waiting_for_the_poll(tmp_path: Path) -> None:
    async def test() -> None:
        assert outbox_module.POLL == 1.0
        bus = MemoryBus()
        conn, outbox = open_outbox(tmp_path, bus)
        await outbox.start()
        try:
            await asyncio.sleep(0.05)  # the relay has looked once and now waits
            assert bus.calls == []
            written = signed_up(1)
            committed = time.monotonic()
            record(outbox, conn, written)
            assert await outbox.published(written.id, timeout=0.5) == 1
            assert time.monotonic() - committed < 0.5
        finally:
            await outbox.close()

    run(test)


def test_the_relay_sends_what_waited_once_the_bus_is_back(tmp_path: Path) -> None:
    async def test() -> None:
        bus, sleep = MemoryBus(), RecordingSleep()
        conn, outbox = open_outbox(tmp_path, bus, sleep)
        bus.failures = ["bus is down"] * 3
        await outbox.start()
        try:
            written = signed_up(1)
            record(outbox, conn, written)
            assert await outbox.published(written.id, timeout=0.5) == 1
            assert sleep.pauses == pytest.approx([0.01, 0.02, 0.04])
            assert outbox.health()["error"] is None
        finally:
            await outbox.close()

    run(test)


def test_close_cancels_the_relay_cleanly(tmp_path: Path) -> None:
    async def test() -> None:
        conn, outbox = open_outbox(tmp_path, MemoryBus())
        await outbox.close()  # never started: nothing to do
        await outbox.start()
        await asyncio.sleep(0.02)  # the relay has looked once and now waits
        (relay,) = relays()
        await outbox.close()
        assert relay.cancelled()
        assert relays() == []
        record(outbox, conn, signed_up(1))
        await asyncio.sleep(0.02)
        assert outbox.pending() == 1, "a closed relay sends nothing"

    run(test)


def test_close_right_after_a_commit_stops_the_relay(tmp_path: Path) -> None:
    async def test() -> None:
        conn, outbox = open_outbox(tmp_path, MemoryBus())
        await outbox.start()
        await asyncio.sleep(0.02)  # the relay has looked once and now waits
        record(outbox, conn, signed_up(1))  # sets the wake-up; the relay has not run yet
        closing = asyncio.create_task(outbox.close())
        await asyncio.sleep(0.1)
        hung = not closing.done()
        for relay in relays():  # let the test end either way: a second cancel gets through
            relay.cancel()
        await closing
        assert not hung, "close() did not return: the relay swallowed its cancellation"

    run(test)


def test_a_followed_writes_events_get_a_publish_span_per_attempt_with_their_position(
        tmp_path: Path) -> None:
    from msshop.runtime.platform.tracing import Tracer

    bus = MemoryBus()
    conn = open_database(tmp_path / "users.db", [OUTBOX_SCHEMA, OUTBOX_TRACE_COLUMN])
    tracer = Tracer("users")
    outbox = Outbox("users", lambda: conn, bus, sleep=RecordingSleep(), tracer=tracer)
    followed = events.make(events.USER_SIGNED_UP, "users", 7, 1, {
        "id": 7, "email": "f@example.com", "name": "F"}, "a" * 32, None, "b" * 16)
    record(outbox, conn, signed_up(6), followed)
    bus.failures.append("bus is down: connection refused")
    run(outbox.flush)
    spans = [s for s in tracer.finished if s["name"] == "publish UserSignedUp"]
    assert [s["status"] for s in spans] == ["error", "ok"], "the failed try, then the sent"
    assert all(s["trace_id"] == "a" * 32 and s["parent_id"] == "b" * 16 for s in spans)
    assert spans[0]["attributes"]["msshop.failure"]
    assert spans[1]["attributes"]["msshop.position"] == 2
    assert len(tracer.finished) == 2, "the other event, nobody followed: no span"
