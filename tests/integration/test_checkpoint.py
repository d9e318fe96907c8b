"""The write-ahead log copied into the file by the checkpointer's thread, never by a commit
(runtime/platform/checkpoint.py), on real SQLite files."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from msshop.runtime.platform.checkpoint import Checkpointer
from msshop.runtime.platform.db import open_database, transaction

PAGES = 1500  # more than the 1,000 pages at which a commit would checkpoint by default
PAGE = 4096


@contextmanager
def service_file(path: Path, interval: float) -> Iterator[tuple[sqlite3.Connection,
                                                                Checkpointer]]:
    conn = open_database(path, ["CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)"])
    own = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    checkpointer = Checkpointer(conn, own, "test", interval)
    checkpointer.start()
    try:
        yield conn, checkpointer
    finally:
        checkpointer.stop()
        conn.close()


def write_pages(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        conn.executemany("INSERT INTO blobs (data) VALUES (?)",
                         [(bytes(PAGE - 100),) for _ in range(PAGES)])


def test_a_commit_leaves_the_copy_to_the_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "service.db"
    with service_file(path, interval=60) as (conn, checkpointer):  # the thread waits
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        before = path.stat().st_size
        write_pages(conn)
        assert path.stat().st_size == before, "the commit copied the log into the file"
        checkpointer.checkpoint()
        assert path.stat().st_size >= PAGES * PAGE
        started = time.perf_counter()
    assert time.perf_counter() - started < 1, "stop() waits for the thread's next turn"
    with sqlite3.connect(path) as reader:
        assert reader.execute("SELECT count(*) FROM blobs").fetchone() == (PAGES,)


def test_the_thread_copies_the_log_soon_after_a_commit(tmp_path: Path) -> None:
    path = tmp_path / "service.db"
    with service_file(path, interval=0.01) as (conn, _):
        write_pages(conn)
        deadline = time.monotonic() + 5
        while path.stat().st_size < PAGES * PAGE and time.monotonic() < deadline:
            time.sleep(0.01)
        assert path.stat().st_size >= PAGES * PAGE, "not copied within 5 s"


def test_a_failing_checkpoint_is_logged_once_until_it_works(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "service.db"
    conn = open_database(path, [])
    own = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    checkpointer = Checkpointer(conn, own, "test", interval=60)
    own.close()  # every checkpoint now fails
    with caplog.at_level(logging.WARNING, logger="msshop.db"):
        checkpointer.checkpoint()
        checkpointer.checkpoint()
    assert checkpointer.error is not None
    assert len(caplog.records) == 1, "the same failure is said once"
    assert "could not be copied into the database file" in caplog.records[0].getMessage()
    checkpointer.stop()  # never started: closes its connection, nothing to join
    conn.close()
