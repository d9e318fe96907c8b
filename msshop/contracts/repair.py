"""`msshop repair bus` and `msshop check`: what became of a damaged or lost event log, and
what the start check of each service's file found."""

from __future__ import annotations

from typing import TypedDict

from msshop.contracts.shop import Replayed


class OutboxRecovered(TypedDict):
    """One writing service's outbox, as the rebuild read it."""

    service: str
    path: str
    events: int  # sent events put back at their positions
    pending: int  # never sent: its relay sends them once the bus is back
    # sent to an earlier log at a position a newer log gave again: back after the head
    moved: int
    error: str | None  # the outbox could not be read: none of its events are back


class Repaired(TypedDict):
    """The bus's log rebuilt from the services' outboxes, in a new file with a new identity."""

    sandbox: str
    bus: str  # "log": bus.db written anew; "nats": the lost stream republished
    path: str  # bus.db, the new one (on NATS: the stream)
    moved_aside: str | None  # the damaged file, kept (None: there was none: it was lost)
    old_log: str | None  # the old log's identity, if it could still be read
    old_head: int | None  # the old log's last position, if it could still be read
    log: str  # the new log's identity: consumers see a replaced log
    events: int  # events put back, each at its original position
    head: int  # the new log's last position
    outboxes: list[OutboxRecovered]
    lost: list[list[int]]  # [first, last] runs of positions no outbox holds: not recovered
    lost_count: int
    # events back at another position than their own: after the head (a position a newer
    # log gave again), or on NATS, numbered by the server after a lost position
    renumbered: int
    started: bool  # the bus was started again (the sandbox runs)
    replayed: Replayed | None  # the read model rebuilt from the new log
    next: str | None  # what is left to do


class FileChecked(TypedDict):
    """One service's file, checked whole (PRAGMA quick_check, read-only)."""

    service: str
    path: str
    exists: bool
    ok: bool | None  # None: no file
    problem: str | None
    way_out: str | None
    seconds: float


class Checked(TypedDict):
    sandbox: str
    files: list[FileChecked]
    ok: bool
