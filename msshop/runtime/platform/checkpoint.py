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
is still bounded: what is written in an INTERVAL, plus what a long read holds back.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("msshop.db")

INTERVAL = 0.1  # seconds between checkpoints; one with nothing to copy costs microseconds


class Checkpointer:
    """Checkpoints `own` (a connection to the service's file, for this thread only) every
    `interval` seconds from start() until stop(); `service` stops checkpointing itself."""

    def __init__(self, service: sqlite3.Connection, own: sqlite3.Connection, name: str,
                 interval: float = INTERVAL) -> None:
        self._service = service
        self._own = own
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-checkpoint",
                                        daemon=True)
        self.error: str | None = None  # the last checkpoint's failure, until one succeeds

    def start(self) -> None:
        self._service.execute("PRAGMA wal_autocheckpoint=0")
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (after the checkpoint under way, if any) and close its connection.
        The service's own connection, closed last, checkpoints what is left."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        self._own.close()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self.checkpoint()

    def checkpoint(self) -> None:
        try:
            self._own.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # e.g. the disk is full: say so once, keep trying
            if self.error != str(exc):
                log.warning("checkpoint: the write-ahead log could not be copied into the "
                            "database file: %s; trying again every %g s", exc, self._interval)
            self.error = str(exc)
        else:
            if self.error is not None:
                log.info("checkpoint: the write-ahead log is copied again")
            self.error = None
