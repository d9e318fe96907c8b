"""Is a service's SQLite file whole, and if not, what is the way out: the check each service
runs on its own file as it starts (db.py's Database.start), the words a damaged file gets
wherever it is met (at start, or later by a route that reads a damaged page), and the full
check the operator asks for (`msshop check`).

Why a time budget at start: PRAGMA quick_check reads every page. Measured on a sandbox
seeded with 1,000,000 orders (orders.db 657 MB, bus.db 566 MB, query.db 115 MB): 0.45,
0.4 and 0.19 s with the files in the page cache, 7.7 s each for the two large ones from a
cold disk, against an `up` of 0.45 s and a start timeout of 10 s. A default sandbox's
files (a few MB) check whole in under 15 ms, and its `up` (0.3 s) did not change. So the
start check stops after START_BUDGET seconds (that sandbox's `up`: 0.45 -> 1.05 s, warm)
and says so; the service starts (what was read was whole); `msshop check` reads the rest,
and a damaged page met later is still named (damage_message) by the request that met it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from msshop.contracts.topology import BY_NAME

START_BUDGET = 0.2  # seconds of quick_check a service spends on its file as it starts
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


@dataclass(frozen=True)
class Checked:
    """What quick_check found: `problem` None if what it read was whole; `complete` False
    if the budget ran out first (the rest was not read)."""

    problem: str | None
    complete: bool
    seconds: float


def quick_check(path: Path, budget: float | None = None, uri: str | None = None) -> Checked:
    """PRAGMA quick_check of `path`, for at most `budget` seconds (None: to the end).
    `uri`: how to open it instead (the operator's read-only look at a file a service may
    hold: instruments/inspection.py's read_only_uri)."""
    started = time.monotonic()
    conn = sqlite3.connect(uri or path, uri=uri is not None, isolation_level=None,
                           check_same_thread=False)
    # interrupted from a timer, not a progress handler: the check runs inside one step of
    # SQLite's VM, between which a handler is called (with one, a cold 1M-order sandbox's
    # `up` took 22 s); an interrupt is looked for at each page
    timer = threading.Timer(budget, conn.interrupt) if budget is not None else None
    try:
        if timer is not None:
            timer.start()
        try:  # a file that is no database at all (page 1 damaged) raises: the caller says
            rows = conn.execute("PRAGMA quick_check(20)").fetchall()
        except sqlite3.OperationalError as exc:
            if budget is not None and "interrupt" in str(exc):
                return Checked(None, False, time.monotonic() - started)
            raise
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc, strictly=True):
                raise
            return Checked(str(exc), True, time.monotonic() - started)  # its schema damaged
    finally:
        if timer is not None:
            timer.cancel()
            timer.join()  # not closed under an interrupt still to come
        conn.close()
    # a row may hold many problems, one per line, under "*** in database main ***": the
    # message is one line (a failed start quotes the one line its log gives the cause in)
    found = [line.strip() for row in rows for line in str(row[0]).splitlines()
             if line.strip() and not line.startswith("***")]
    problem = None if found == ["ok"] else "; ".join(found[:3]) + (
        f" (and {len(found) - 3} more)" if len(found) > 3 else "")
    return Checked(problem, True, time.monotonic() - started)


def is_damage(exc: BaseException, strictly: bool = False) -> bool:
    """Whether an error says the file is damaged (not busy, not full, not a bad query);
    `strictly`: a SQLite file with damaged pages, not a file that is none at all."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and code is not None \
        and code & 0xFF in (_DAMAGED[:1] if strictly else _DAMAGED)


def way_out(service: str, path: Path, running: bool = False) -> str:
    """What to do about `service`'s damaged file, which depends on what the file is: the
    bus's log is rebuilt from the outboxes, a read model from the bus; a writing service's
    file is the only copy of its data. `running`: the service runs (stop it first)."""
    if service == "bus":
        stop = "msshop stop bus; " if running else ""
        return f"rebuild it from the services' outboxes: {stop}msshop repair bus"
    spec = BY_NAME.get(service)
    if spec is not None and not spec.publishes:  # the read model: a copy of the others
        stop = f"msshop stop {service}; " if running else ""
        return (f"it is a read model: move it aside and start {service} again, which "
                f"rebuilds it from the bus: {stop}mv {path} {path}.damaged; "
                f"msshop start {service} (or msshop up --detach)")
    # not "start it empty": the others hold its ids, which a new file would give again
    return (f"move it away and put back a copy taken while {service} was stopped (it is "
            f"the only copy of what {service} stores); without one, start an empty "
            f"sandbox (every service's data is lost): msshop down; rm -r {path.parent.parent}; "
            "msshop up --detach")


def damage_message(service: str, path: Path, problem: str, running: bool = False) -> str:
    """One line: which file, what is wrong, the way out."""
    return f"its database {path} is damaged ({problem}); {way_out(service, path, running)}"
