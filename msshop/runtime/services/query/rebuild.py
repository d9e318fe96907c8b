"""Rebuild the read model from position 0 of the bus while the service keeps answering.

The new read model is built in a second set of tables in the same file (`*_replica_next`:
the query service may open no other file), from the whole log, then swapped in with the
consumer's position in one transaction. Meanwhile the live consumer is paused and answers
come from the old tables, saying how far behind they are; afterwards the live consumer goes
on from the rebuilt model's position.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from msshop.bus.interface import Bus
from msshop.runtime.platform.consumer import Consumer
from msshop.runtime.platform.db import statements, transaction
from msshop.runtime.services.query.projection import LIVE, Projection

REBUILDER = "query-rebuild"


async def rebuild(connection: Callable[[], Any], bus: Bus, live: Consumer,
                  swapped: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Build the read model anew and swap it in; `swapped` runs in the swap's transaction
    (what was kept from the old tables is let go)."""
    conn = connection()
    shadow = Projection("_next", bulk=True)
    with transaction(conn):
        for table in shadow.tables.values():
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in statements(shadow.schema):
            conn.execute(statement)
        conn.execute("DELETE FROM consumer_offsets WHERE consumer = ?", (REBUILDER,))
    before = live.position
    await live.close()
    try:
        rebuilder = Consumer(REBUILDER, connection, bus, shadow.apply, held=shadow)

        def swap(conn: Any) -> None:
            """In the transaction that applies the last events: the copies, then the swap."""
            shadow.finish(conn)
            for name, table in shadow.tables.items():
                conn.execute(f"DROP TABLE {LIVE.tables[name]}")
                conn.execute(f"ALTER TABLE {table} RENAME TO {LIVE.tables[name]}")
            # built once the rows are in (and after the rename: an index keeps its name)
            conn.execute(LIVE.index)
            # the live consumer takes over the rebuilder's position (none: an empty log)
            conn.execute("DELETE FROM consumer_offsets WHERE consumer = ?", (live.name,))
            conn.execute("UPDATE consumer_offsets SET consumer = ? WHERE consumer = ?",
                         (live.name, REBUILDER))
            swapped()

        # the table keeps the live consumer's dead letters: count only what this pass finds
        (dead_before,) = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        started = time.perf_counter()
        applied = await rebuilder.catch_up(then=swap)
        seconds = time.perf_counter() - started  # read, applied, indexed and swapped in
    finally:
        await live.start()  # from the swapped-in position, or the old one if this failed
    return {"events": applied, "seconds": seconds,
            "per_second": applied / seconds if seconds else 0.0,
            "position": rebuilder.position, "position_before": before,
            "dead_letters": rebuilder.dead - dead_before}
