"""The log bus's read of a few types (GET /events?types=), on a real bus.db in tmp_path:
the SQL looks at a bounded range of positions, and says how far it looked (`through`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from msshop.contracts import events
from msshop.runtime.platform.db import open_database
from msshop.runtime.services import bus as bus_service


def event_log(tmp_path: Path, kinds: list[str]) -> sqlite3.Connection:
    """A bus.db whose events are of `kinds`, in order (positions from 1)."""
    conn = open_database(tmp_path / "bus.db", bus_service.MIGRATIONS)
    batch = []
    for n, kind in enumerate(kinds, start=1):
        event = events.make(kind, events.OWNERS[kind], n, 1, {}, None)
        batch.append((event, events.encode(event)))
    bus_service.append(conn, batch)
    return conn


def page(conn: sqlite3.Connection, after: int, limit: int,
         types: frozenset[str] | None) -> tuple[list[int], int]:
    head = conn.execute("SELECT max(position) FROM events").fetchone()[0]
    answer = msgspec.json.decode(bus_service.read(conn, after, limit, head, b"log", None, types))
    return [item["position"] for item in answer["events"]], answer["through"]


PLACED, SIGNED = events.ORDER_PLACED, events.USER_SIGNED_UP


def test_a_read_of_some_types_hands_those_and_says_it_looked_to_the_head(tmp_path: Path
                                                                         ) -> None:
    conn = event_log(tmp_path, [SIGNED, PLACED, SIGNED, SIGNED, PLACED, SIGNED])
    assert page(conn, 0, 10, frozenset({PLACED})) == ([2, 5], 6)
    assert page(conn, 2, 10, frozenset({PLACED})) == ([5], 6)
    assert page(conn, 5, 10, frozenset({PLACED})) == ([], 6)
    assert page(conn, 0, 10, None) == ([1, 2, 3, 4, 5, 6], 6)


def test_a_full_page_says_it_looked_as_far_as_its_last_event(tmp_path: Path) -> None:
    conn = event_log(tmp_path, [PLACED, SIGNED, PLACED, SIGNED, PLACED])
    assert page(conn, 0, 2, frozenset({PLACED})) == ([1, 3], 3)
    assert page(conn, 0, 2, None) == ([1, 2], 2)


def test_a_reader_far_behind_looks_at_most_scan_positions_a_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bus_service, "SCAN", 3)
    conn = event_log(tmp_path, [SIGNED] * 7 + [PLACED])
    assert page(conn, 0, 10, frozenset({PLACED})) == ([], 3)
    assert page(conn, 3, 10, frozenset({PLACED})) == ([], 6)
    assert page(conn, 6, 10, frozenset({PLACED})) == ([8], 8)
    assert page(conn, 0, 10, None) == ([1, 2, 3, 4, 5, 6, 7, 8], 8), "all: no bound"
