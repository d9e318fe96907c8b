"""A service's write-ahead log copied back into its file by a thread of its own, not by a commit.

SQLite's default is that the commit which takes the WAL past 1,000 pages copies them into
the database file itself, and syncs it: a few milliseconds in which the service's event loop
stands still, every second or so under load, holding up every request and event in flight.
Measured (issue 14, docs/benchmarks.md) that was the tail of the replication lag: p99 5.3 ms
at 1,000 purchases/s with it, 1.2-1.6 ms without.

So the service's connection never checkpoints (`wal_autocheckpoint=0`), and a thread runs a
PASSIVE checkpoint every INTERVAL on a second connection to the same file. A passive
checkpoint runs beside readers and writers (it copies what no reader still needs), and the
sqlite3 module lets go of the GIL while SQLite copies, so the loop keeps serving. The WAL
is still bounded: what is written in an INTERVAL, plus what a long read holds back, as long
as checkpoints succeed. While they fail (a full disk: the file cannot grow to take the
pages) the WAL grows with every commit; the thread keeps trying, and the task says so in
/health, with the WAL's size (tasks.py: "orders' checkpoint failing for 40 s: database or
disk is full; the write-ahead log is 49.0 MB ..."), until one succeeds and the WAL is
reused from its start.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from msshop.runtime.platform.tasks import Task, Tasks

log = logging.getLogger("msshop.db")

INTERVAL = 0.1  # seconds between checkpoints; one with nothing to copy costs microseconds


class Checkpointer:
    """Checkpoints `own` (a connection to the service's file, for this thread only) every
    `interval` seconds from start() until stop(), on a thread its process's `tasks`
    supervise; `service` stops checkpointing itself."""

    def __init__(self, service: sqlite3.Connection, own: sqlite3.Connection, name: str,
                 interval: float = INTERVAL, tasks: Tasks | None = None) -> None:
        self._service = service
        self._own = own
        self._interval = interval
        self._stopping = threading.Event()
        self._tasks = tasks or Tasks(name)
        self._task: Task = self._tasks.add("checkpoint")
        self._task.detail = self.wal_words
        self._file: Path | None = None  # the service's file, known once started
        self.error: str | None = None  # the last checkpoint's failure, until one succeeds

    def start(self) -> None:
        self._service.execute("PRAGMA wal_autocheckpoint=0")
        file = self._service.execute("PRAGMA database_list").fetchone()[2]
        self._file = Path(file) if file else None
        self._tasks.thread(self._task, self._run, self._stopping)

    def stop(self) -> None:
        """Stop the thread (after the checkpoint under way, if any) and close its connection.
        The service's own connection, closed last, checkpoints what is left."""
        self._stopping.set()
        self._task.join()
        self._own.close()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self.checkpoint()

    def checkpoint(self) -> None:
        try:
            self._own.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # e.g. the disk is full: say so once, keep trying
            self.error = str(exc)  # logged once per cause, and shown in /health
            self._task.failed(f"the write-ahead log could not be copied into the database "
                              f"file: {exc}")
        else:
            self.error = None
            self._task.recovered()

    def wal_words(self) -> str:
        """The WAL's size in words, while checkpoints fail: it grows until one succeeds."""
        size = wal_bytes(self._file) if self._file is not None else 0
        return (f"the write-ahead log is {size / 1e6:.1f} MB and grows with every write "
                "until a checkpoint succeeds")


def wal_bytes(file: Path) -> int:
    """The size of `file`'s write-ahead log (0: none)."""
    try:
        return Path(f"{file}-wal").stat().st_size
    except OSError:
        return 0
