"""Background work under its process's supervisor (runtime/platform/tasks.py), in process: a
relay and a consumer whose work raises what they did not expect are started again, say so
in /health (degraded, with the task and the cause) and resume by themselves; a full disk
is a 507 naming the file, not a 500 with a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from msshop.bus.interface import Page
from msshop.contracts import events
from msshop.contracts.events import Received
from msshop.runtime.platform.app import service_app
from msshop.runtime.platform.checkpoint import Checkpointer
from msshop.runtime.platform.consumer import Consumer
from msshop.runtime.platform.db import open_database, transaction
from msshop.runtime.platform.openapi import Endpoint
from msshop.runtime.platform.outbox import OUTBOX_SCHEMA, OUTBOX_TRACE_COLUMN, Outbox
from msshop.runtime.platform.routing import Router
from msshop.runtime.platform.tasks import Tasks
from msshop.runtime.services.query import MIGRATIONS, projection
from tests.fakes import MemoryBus, RecordingSleep, run
from tests.unit.test_openapi import call

DISK_FULL = "database or disk is full"


class InjectedBus(MemoryBus):
    """A MemoryBus whose appends and reads raise `injected` (not BusUnavailable: what no
    one expected) while it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.injected: Exception | None = None

    async def append(self, events: Sequence[bytes]) -> list[int]:
        if self.injected is not None:
            raise self.injected
        return await super().append(events)

    async def read(self, after: int, limit: int, wait: float = 0.0,
                   types: frozenset[str] | None = None) -> Page:
        if self.injected is not None:
            raise self.injected
        return await super().read(after, limit, wait, types)


async def get(app: Callable[..., Any], path: str) -> tuple[int, Any]:
    """One GET to an ASGI app, inside the running loop (the app's resources started)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
               "query_string": b"", "headers": [], "root_path": "",
               "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


async def until(condition: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.001)


def signed_up(user_id: int) -> events.Event:
    return events.make(events.USER_SIGNED_UP, "users", user_id, 1,
                       {"id": user_id, "email": f"u{user_id}@example.com",
                        "name": f"U{user_id}"}, None)


def test_a_relay_that_raises_is_started_again_shown_in_health_and_resumes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    conn = open_database(tmp_path / "users.db", [OUTBOX_SCHEMA, OUTBOX_TRACE_COLUMN])
    bus = InjectedBus()
    pauses = RecordingSleep()
    tasks = Tasks("users", sleep=pauses)
    outbox = Outbox("users", lambda: conn, bus, sleep=RecordingSleep(), tasks=tasks)
    app = service_app("users", [], lambda: {"outbox": outbox.health()}, [outbox])

    async def test() -> None:
        await outbox.start()
        try:
            bus.injected = RuntimeError("injected")
            with outbox.transaction(conn):
                outbox.add(conn, [signed_up(1)])
            relay = tasks.get("relay")
            assert relay is not None
            await until(lambda: relay.restarts >= 3, "started again after each failure")
            status, health = await get(app, "/health")
            assert status == 200, "a degraded service still answers its health"
            assert health["status"] == "degraded"
            assert len(health["problems"]) == 1
            assert health["problems"][0].startswith("users' relay failing for ")
            assert health["problems"][0].endswith(" s: RuntimeError: injected")
            [task] = health["tasks"]
            assert (task["name"], task["state"], task["error"]) == (
                "relay", "failing", "RuntimeError: injected")
            assert pauses.pauses[:3] == [0.01, 0.02, 0.04], "restarted with backoff"
            assert outbox.pending() == 1, "the event waits in the outbox"

            bus.injected = None  # the cause goes away
            await until(lambda: outbox.pending() == 0, "the relay resumed by itself")
            status, health = await get(app, "/health")
            assert (health["status"], health["problems"]) == ("ok", [])
            assert health["tasks"][0]["state"] == "running"
            assert health["tasks"][0]["restarts"] >= 3
            assert len(bus.log) == 1
        finally:
            await outbox.close()

    with caplog.at_level(logging.INFO, logger="msshop.tasks"):
        run(test)
    said = [r.getMessage() for r in caplog.records if r.name == "msshop.tasks"]
    failed = [line for line in said if "failed" in line]
    assert len(failed) == 1, f"the same cause is logged once, at once: {said}"
    assert failed[0].startswith("users' relay failed: RuntimeError: injected (at ")
    assert "\n" not in failed[0]
    assert any(line.startswith("users' relay works again") for line in said)


def test_a_consumer_whose_disk_is_full_dead_letters_nothing_and_resumes(tmp_path: Path
                                                                        ) -> None:
    conn = open_database(tmp_path / "query.db", MIGRATIONS)
    bus = MemoryBus()
    full = [True]

    def apply(conn: sqlite3.Connection, event: Received, position: int) -> None:
        projection.apply(conn, event, position)
        if full[0]:  # as a write or COMMIT on a full disk fails
            raise sqlite3.OperationalError(DISK_FULL)

    tasks = Tasks("query", sleep=RecordingSleep())
    consumer = Consumer("query", lambda: conn, bus, apply, sleep=RecordingSleep(),
                        tasks=tasks)
    app = service_app("query", [], lambda: {"consumer": consumer.health()}, [consumer])

    async def test() -> None:
        await bus.append([events.encode(signed_up(n)) for n in (1, 2, 3)])
        await consumer.start()
        try:
            task = tasks.get("consumer")
            assert task is not None
            await until(lambda: task.restarts >= 2, "started again")
            _, health = await get(app, "/health")
            assert health["status"] == "degraded"
            assert health["problems"][0].startswith("query's consumer failing for ")
            assert health["problems"][0].endswith(f" s: {DISK_FULL}")
            fresh = health["consumer"]
            assert fresh["bus_error"] is None, "the bus is fine: not blamed"
            assert not fresh["listening"] and not fresh["caught_up"]
            assert fresh["position"] == 0 and fresh["dead_letters"] == 0
            assert conn.execute("SELECT count(*) FROM users_replica").fetchone() == (0,)

            full[0] = False  # space freed
            await until(lambda: consumer.position == 3, "the consumer resumed by itself")
            _, health = await get(app, "/health")
            assert (health["status"], health["problems"]) == ("ok", [])
            assert health["consumer"]["caught_up"]
            assert conn.execute("SELECT count(*) FROM users_replica").fetchone() == (3,)
            assert consumer.dead == 0, "a full disk is not the event's fault"
        finally:
            await consumer.close()

    run(test)


def test_an_unexpected_read_failure_restarts_the_consumer(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "query.db", MIGRATIONS)
    bus = InjectedBus()
    tasks = Tasks("query", sleep=RecordingSleep())
    consumer = Consumer("query", lambda: conn, bus, projection.apply, sleep=RecordingSleep(),
                        tasks=tasks)

    async def test() -> None:
        bus.injected = KeyError("position")
        await consumer.start()
        try:
            task = tasks.get("consumer")
            assert task is not None
            await until(lambda: task.restarts >= 2, "started again")
            assert tasks.problems()[0].endswith(" s: KeyError: 'position'")
            bus.injected = None
            await bus.append([events.encode(signed_up(1))])
            await until(lambda: consumer.position == 1, "resumed")
            assert tasks.problems() == []
        finally:
            await consumer.close()
        assert task.health()["state"] == "stopped"

    run(test)


def test_a_thread_that_raises_is_started_again() -> None:
    tasks = Tasks("orders")
    stopping = threading.Event()
    calls: list[int] = []
    task = tasks.add("checkpoint")

    def work() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise OSError(28, "No space left on device")
        task.recovered()
        stopping.wait()

    tasks.thread(task, work, stopping)
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(calls) == 3 and task.restarts == 2
    assert tasks.problems() == []
    stopping.set()
    task.join()


def test_a_full_disk_is_a_507_naming_the_file_and_the_fix(
        caplog: pytest.LogCaptureFixture) -> None:
    async def write(request: Request) -> Response:
        raise sqlite3.OperationalError(DISK_FULL)

    router = Router("orders", db_path=Path("/data/sandbox/data/orders.db"))
    router.add(Endpoint("POST", "/orders", write, "A write", {}))
    with caplog.at_level(logging.WARNING, logger="msshop.http"):
        for _ in range(3):
            status, _, answer = call(router, "POST", "/orders")  # type: ignore[arg-type]
    assert status == 507
    assert answer == {
        "error": "the disk of orders is full (/data/sandbox/data/orders.db): nothing was "
                 "written; free some space on it (df -h /data/sandbox/data) and try again, "
                 "reads still work", "status": 507, "service": "orders"}
    assert len(caplog.records) == 1, "one line, not one per write, and no traceback"
    assert caplog.records[0].exc_info is None


def test_a_refused_commit_leaves_no_transaction_open(tmp_path: Path) -> None:
    """A COMMIT that fails (here a deferred foreign key; on a full disk SQLITE_FULL) may
    leave the transaction open: every later BEGIN on the connection would then fail, and a
    restarted relay or consumer with it."""
    conn = open_database(tmp_path / "file.db", [
        "CREATE TABLE parents (id INTEGER PRIMARY KEY);"
        "CREATE TABLE children (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parents "
        "DEFERRABLE INITIALLY DEFERRED)"])
    with pytest.raises(sqlite3.IntegrityError), transaction(conn):
        conn.execute("INSERT INTO children VALUES (1, 99)")
    assert not conn.in_transaction
    with transaction(conn):
        conn.execute("INSERT INTO parents VALUES (1)")
    assert conn.execute("SELECT count(*) FROM children").fetchone() == (0,)


def test_a_failing_checkpoint_is_a_problem_with_the_wal_size(tmp_path: Path) -> None:
    path = tmp_path / "service.db"
    conn = open_database(path, ["CREATE TABLE t (x)"])
    own = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    tasks = Tasks("orders")
    checkpointer = Checkpointer(conn, own, "orders", interval=60, tasks=tasks)
    checkpointer.start()
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
    own.close()  # every checkpoint now fails
    checkpointer.checkpoint()
    [problem] = tasks.problems()
    assert problem.startswith("orders' checkpoint failing for 0 s: the write-ahead log could "
                              "not be copied into the database file: ")
    assert problem.endswith("; the write-ahead log is 0.1 MB and grows with every write "
                            "until a checkpoint succeeds")
    checkpointer.stop()
    conn.close()
