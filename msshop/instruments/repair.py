"""`msshop check`: each service's file checked whole (the start check stops after a time
budget: runtime/platform/integrity.py). `msshop repair bus`: rebuild the bus's event log
from what the services' outboxes hold.

Why it can: a writing service keeps each outbox row after sending it, with the position the
bus gave it (runtime/platform/outbox.py), so users, products and orders hold every event
they ever sent, where it went. Put back together, they are the log, but for what no outbox
holds: events appended directly (`msshop poison`), and a position an earlier log used that
a newer one gave to another event.

The rebuild: the bus stopped (a running bus holds its file); the damaged bus.db (and its
-wal, -shm) moved aside, named, never deleted; a new bus.db with every recoverable event at
its original position, under a NEW log identity, so the read model sees a replaced log and
is rebuilt from it (`msshop replay query`, which this runs once the bus is back); then the
bus started again. Outbox rows never sent stay pending: the relays send them after.

The operator looking, not a service (as in inspection.py and monolith.py): the services'
files are opened read-only, while they run. The bus's own schema is the bus's (services/
bus.py), so the new file is what a bus would have made.
"""

from __future__ import annotations

import heapq
import sqlite3
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

import msgspec

from msshop.contracts.config import Settings
from msshop.contracts.errors import SandboxError, UsageError
from msshop.contracts.events import decode
from msshop.contracts.limits import MAX_BATCH
from msshop.contracts.repair import Checked, FileChecked, OutboxRecovered, Repaired
from msshop.contracts.topology import BY_NAME, NAMES, SERVICES
from msshop.instruments.inspection import Unreadable, bus_backend, read_only_uri
from msshop.runtime.orchestrator import lifecycle
from msshop.runtime.orchestrator.layout import move_to_service_dirs, refuse_old_layout
from msshop.runtime.orchestrator.state import SandboxPaths, is_running, read_state
from msshop.runtime.platform.db import open_database, transaction
from msshop.runtime.platform.integrity import quick_check, way_out

#: one recovered event: (position, sent_at, source, its bytes as sent)
Row = tuple[int, float, str, bytes]
INSERT = ("INSERT INTO events (position, id, type, source, aggregate_type, aggregate_id, "
          "aggregate_version, occurred_at, appended_at, trace_id, body) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
WAL_FILES = ("-wal", "-shm")


def check_files(settings: Settings, service: str | None = None) -> Checked:
    """Each service's file (or `service`'s) read whole by PRAGMA quick_check, read-only
    (the sandbox may run): whether it is damaged, and the way out if it is."""
    if service is not None and service not in BY_NAME:
        raise UsageError(f"unknown service {service!r}; choose one of: " + ", ".join(NAMES))
    paths = SandboxPaths(settings.sandbox_dir)
    if not paths.data.is_dir():
        raise SandboxError(f"no sandbox in {paths.root} (no data/ there): nothing to check")
    refuse_old_layout(paths.root, "check")
    state = read_state(paths) if is_running(paths) else None
    files: list[FileChecked] = []
    for name in [service] if service else NAMES:
        path = BY_NAME[name].db_path(paths.root)
        file: FileChecked = {"service": name, "path": str(path), "exists": path.exists(),
                             "ok": None, "problem": None, "way_out": None, "seconds": 0.0}
        files.append(file)
        if not file["exists"]:
            continue
        try:
            checked = quick_check(path, uri=read_only_uri(path))
        except (Unreadable, sqlite3.Error) as exc:
            file["problem"] = f"cannot be read: {exc}"
        else:
            file["problem"], file["seconds"] = checked.problem, round(checked.seconds, 3)
        file["ok"] = file["problem"] is None
        if not file["ok"]:
            running = state is not None and state.services[name].status == "running"
            file["way_out"] = way_out(name, path, running)
    return {"sandbox": str(paths.root), "files": files,
            "ok": all(file["ok"] is not False for file in files)}


def repair_bus(settings: Settings) -> Repaired:
    paths = SandboxPaths(settings.sandbox_dir)
    if not paths.data.is_dir():
        raise SandboxError(f"no sandbox in {paths.root} (no data/ there): nothing to repair")
    if bus_backend(paths) == "nats":
        return _republish(settings, paths)
    running = is_running(paths)
    state = read_state(paths) if running else None
    if state is not None and state.services["bus"].status in ("running", "starting"):
        raise SandboxError("the bus is running: stop it first (a running bus holds its "
                           "file), then repair: msshop stop bus; msshop repair bus")
    if not running:  # a sandbox of the old layout: its files where the new log will go
        move_to_service_dirs(paths.root)
    path = BY_NAME["bus"].db_path(paths.root)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    old_log, old_head = _old_log(path)
    rebuilt = path.with_name(path.name + ".rebuilt")
    with _outboxes(paths.root) as (outboxes, sent):
        _something_to_read(outboxes)
        merged = Merged()
        written = _write(rebuilt, _merged(sent, outboxes, old_head, merged))
    moved = _move_aside(path)
    rebuilt.rename(path)
    lost = merged.gaps
    report: Repaired = {
        "sandbox": str(paths.root), "bus": "log", "path": str(path),
        "moved_aside": str(moved) if moved else None, "old_log": old_log,
        "old_head": old_head, "log": written.log, "events": written.events,
        "head": written.head,
        "outboxes": outboxes, "lost": [[a, b] for a, b in lost],
        "lost_count": sum(b - a + 1 for a, b in lost),
        "renumbered": sum(outbox["moved"] for outbox in outboxes), "started": False,
        "replayed": None, "next": None,
    }
    if state is None:
        report["next"] = ("start the sandbox, then rebuild the read model from the new log: "
                          "msshop up --detach; msshop replay query")
        return report
    lifecycle.start(settings, "bus")
    report["started"] = True
    return _replayed(settings, report)


def _replayed(settings: Settings, report: Repaired) -> Repaired:
    """The read model rebuilt from the new log, if the query service runs."""
    if lifecycle.running_state(settings).services["query"].status == "running":
        from msshop.instruments.replay import replay

        report["replayed"] = replay(settings, "query")
    else:
        report["next"] = ("start the query service, then rebuild its read model from the "
                          "new log: msshop start query; msshop replay query")
    return report


def _republish(settings: Settings, paths: SandboxPaths) -> Repaired:
    """On NATS JetStream: the stream lost with its store (or deleted) is made again with
    every event the outboxes sent, in position order, each published by its own service's
    credential with its id (the server numbers them: a position keeps its number as long
    as no position before it was lost). Into an empty stream only: one that a relay has
    made again and published to meanwhile would mix the new with the old."""
    import asyncio

    from msshop.bus.interface import BusUnavailable
    from msshop.instruments.client import ShopClient

    state = lifecycle.running_state(settings)
    client = ShopClient(state)

    async def republish(rows: Iterator[Row]) -> tuple[Written, int]:
        owner = client.bus()
        buses = {spec.name: client.bus(as_service=spec.name)
                 for spec in SERVICES if spec.publishes}
        try:
            with suppress(BusUnavailable):  # no stream (lost): none is made by reading
                if (head := await owner.head()) > 0:
                    raise SandboxError(
                        f"the stream holds {head:,} events: it was not lost, or a relay has "
                        "made it again and published to it since; repair republishes into "
                        "a lost stream only")
            written, renumbered = Written(), 0
            for source, run in groupby(rows, key=lambda row: row[2]):
                batch = list(run)
                for start in range(0, len(batch), MAX_BATCH):
                    part = batch[start:start + MAX_BATCH]
                    positions = await buses[source].append([row[3] for row in part])
                    renumbered += sum(row[0] != position
                                      for row, position in zip(part, positions, strict=True))
                    written.events += len(part)
                    written.head = max(written.head, *positions)
            written.log = (await owner.read(0, 1)).log if written.events else ""
            return written, renumbered
        except BusUnavailable as exc:
            raise SandboxError(f"republishing stopped: {exc.message}; what was sent stays "
                               "(each event once: the server knows its id); run "
                               "msshop repair bus again once NATS answers") from None
        finally:
            for bus in (owner, *buses.values()):
                await bus.close()

    with _outboxes(paths.root) as (outboxes, sent):
        _something_to_read(outboxes)
        merged = Merged()
        written, renumbered = asyncio.run(republish(_merged(sent, outboxes, None, merged)))
    lost = merged.gaps
    report: Repaired = {
        "sandbox": str(paths.root), "bus": "nats", "path": "NATS JetStream's stream",
        "moved_aside": None,
        "old_log": None, "old_head": None, "log": written.log, "events": written.events,
        "head": written.head, "outboxes": outboxes, "lost": [[a, b] for a, b in lost],
        "lost_count": sum(b - a + 1 for a, b in lost), "renumbered": renumbered,
        "started": True, "replayed": None, "next": None,
    }
    return _replayed(settings, report)


def _old_log(path: Path) -> tuple[str | None, int | None]:
    """The damaged log's identity and last position, if they can still be read (the last
    position is on the b-tree's rightmost path, often whole when the middle is not)."""
    if not path.exists():
        return None, None
    log_id = head = None
    try:
        with closing(sqlite3.connect(read_only_uri(path), uri=True)) as conn:
            with suppress(sqlite3.Error):
                (log_id,) = conn.execute("SELECT id FROM log").fetchone()
            with suppress(sqlite3.Error):
                (head,) = conn.execute("SELECT max(position) FROM events").fetchone()
    except Unreadable:
        pass
    return log_id, head


@contextmanager
def _outboxes(root: Path) -> Iterator[tuple[list[OutboxRecovered], Iterator[Row]]]:
    """What each writing service's outbox holds, and every sent row of them all in position
    order (merged as read: a log of a million events is not held in memory), read-only,
    each outbox as of one moment."""
    found: list[OutboxRecovered] = []
    streams: list[Iterator[Row]] = []
    with ExitStack() as stack:
        for spec in SERVICES:
            if not spec.publishes:
                continue
            path = spec.db_path(root)
            outbox: OutboxRecovered = {"service": spec.name, "path": str(path), "events": 0,
                                       "pending": 0, "moved": 0, "error": None}
            found.append(outbox)
            if not path.exists():
                outbox["error"] = f"{path.name} does not exist"
                continue
            try:
                conn = stack.enter_context(closing(
                    sqlite3.connect(read_only_uri(path), uri=True)))
                conn.execute("BEGIN")  # one moment of the file: the sent and the pending
                (outbox["pending"],) = conn.execute(
                    "SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
                streams.append(_sent(conn, spec.name, outbox))
            except (Unreadable, sqlite3.Error) as exc:
                outbox["error"] = f"{path.name} cannot be read: {exc}"
        yield found, heapq.merge(*streams, key=lambda row: (row[0], row[1]))


def _something_to_read(outboxes: list[OutboxRecovered]) -> None:
    """Refuse to make an empty log out of nothing: no outbox could be read at all."""
    if all(outbox["error"] for outbox in outboxes):
        raise SandboxError("no outbox to rebuild the log from: " + "; ".join(
            f"{outbox['error']}" for outbox in outboxes) + "; nothing was changed")


def _sent(conn: sqlite3.Connection, service: str, outbox: OutboxRecovered) -> Iterator[Row]:
    try:
        for position, sent_at, body in conn.execute(
                "SELECT position, sent_at, body FROM outbox WHERE position IS NOT NULL "
                "ORDER BY position, sent_at"):
            yield position, sent_at or 0.0, service, bytes(body)
    except sqlite3.Error as exc:  # damaged part-way: what came before it is back
        outbox["error"] = f"reading it stopped: {exc}"


@dataclass
class Merged:
    """The outboxes' rows put in order: the last original position put back, and the runs
    of positions up to the old log's head that no outbox held."""

    head: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)


def _merged(sent: Iterator[Row], outboxes: list[OutboxRecovered], old_head: int | None,
            merged: Merged) -> Iterator[Row]:
    """One event a position, counted for its outbox. Two rows at one position were sent to
    two logs (the log was replaced before, and the newer one gave the position again): the
    later-sent is the newer log's and stays; the earlier is put back after the head, at a
    new position (its outbox still names the old one, which no reader waits for)."""
    by_service = {outbox["service"]: outbox for outbox in outboxes}
    displaced: list[Row] = []
    for position, rows in groupby(sent, key=lambda row: row[0]):
        *earlier, kept = rows  # in order of sending
        displaced.extend(earlier)
        if position > merged.head + 1:
            merged.gaps.append((merged.head + 1, position - 1))
        merged.head = position
        by_service[kept[2]]["events"] += 1
        yield kept
    end = max(merged.head, old_head or 0)
    if end > merged.head:  # the old log went further than any outbox
        merged.gaps.append((merged.head + 1, end))
    for offset, row in enumerate(sorted(displaced, key=lambda row: row[1]), start=1):
        by_service[row[2]]["moved"] += 1
        yield end + offset, row[1], row[2], row[3]


@dataclass
class Written:
    """What went into the new log: its identity, how many events, its head."""

    log: str = ""
    events: int = 0
    head: int = 0


def _write(path: Path, rows: Iterator[Row]) -> Written:
    """A new bus.db at `path`: the bus's own schema (with a new log identity), then every
    event at its position."""
    from msshop.runtime.services.bus import MIGRATIONS  # the bus's schema, not a copy

    files = (path, *(path.with_name(path.name + s) for s in WAL_FILES))
    for stale in files:
        stale.unlink(missing_ok=True)  # an earlier repair that stopped half-way
    written = Written()
    try:
        conn = open_database(path, MIGRATIONS)
        try:
            with transaction(conn):
                conn.executemany(INSERT, _inserted(rows, written))
            (written.log,) = conn.execute("SELECT id FROM log").fetchone()
        finally:
            conn.close()  # the last connection: the WAL is copied into the file, removed
    except (sqlite3.Error, OSError) as exc:  # a full disk: the old file was not touched
        for partial in files:
            partial.unlink(missing_ok=True)
        raise SandboxError(f"writing the new log {path} failed: {exc}; nothing was changed "
                           "(free the space, then run msshop repair bus again)") from None
    return written


def _inserted(rows: Iterator[Row], written: Written) -> Iterator[tuple[object, ...]]:
    """Each row as the bus stores it, in position order."""
    for position, sent_at, _, body in rows:
        try:
            e = decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # a service's own row that is not an event: it never reached a bus
        written.events += 1
        written.head = position
        yield (position, e.id, e.type, e.source, e.aggregate_type, e.aggregate_id,
               e.aggregate_version, e.occurred_at, sent_at or time.time(), e.trace_id, body)


def _move_aside(path: Path) -> Path | None:
    """The damaged file (with its -wal and -shm: a -wal left without its file too, which a
    new file must not take for its own) renamed beside it; None if there was nothing."""
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    moved = False
    for suffix in WAL_FILES:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.rename(aside.with_name(aside.name + suffix))
            moved = True
    if path.exists():
        path.rename(aside)
        return aside
    return aside if moved else None
