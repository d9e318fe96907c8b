"""A full disk, recognised in one place, whichever layer noticed it: SQLite's SQLITE_FULL
("database or disk is full", from a write, a COMMIT or a checkpoint) and the system's
ENOSPC or EDQUOT (a file written by hand).

A full disk is not a bug: what was committed stays, reads go on, and everything that
failed succeeds again once there is room. So a write refused for it is answered 507 with
the path and the fix (routing.py), and background work retries until it can (tasks.py).
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

SQLITE_FULL = 13  # the primary result code; extended codes keep it in their low byte
STATUS = 507  # HTTP's Insufficient Storage
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# SQLite's primary codes for a file that cannot take a write now, whatever is written:
# BUSY, LOCKED, NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB
_CANNOT_WRITE = frozenset({5, 6, 7, 8, 10, 11, 13, 14, 26})


def is_full(exc: BaseException) -> bool:
    """Whether `exc` says there is no room left on the disk."""
    if isinstance(exc, sqlite3.Error):
        code: int | None = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF == SQLITE_FULL
        return "database or disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in _NO_SPACE


def cannot_write(exc: BaseException) -> bool:
    """Whether `exc` is the file's or the machine's problem (a full disk, an I/O error, a
    lock, memory), not the fault of what was being written: a consumer must not
    dead-letter an event for it, but stop the batch and try it again later."""
    if isinstance(exc, sqlite3.Error):
        code: int | None = getattr(exc, "sqlite_errorcode", None)
        return is_full(exc) if code is None else code & 0xFF in _CANNOT_WRITE
    return isinstance(exc, OSError | MemoryError)


def full_disk(service: str, path: Path | str | None) -> str:
    """The one line a refused write answers with: whose disk, where, and the way out."""
    where = f" ({path})" if path else ""
    folder = Path(path).parent if path else None
    look = f" (df -h {folder})" if folder else ""
    return (f"the disk of {service} is full{where}: nothing was written; free some space on "
            f"it{look} and try again, reads still work")
