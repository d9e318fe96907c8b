"""The start check of a service's file (runtime/platform/integrity.py), on real files: a
damaged one found and named with the way out for what the file is; a large one checked
within its time budget."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from msshop.runtime.platform.integrity import damage_message, is_damage, quick_check, way_out


def filled(path: Path, rows: int) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
        conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                     "WHERE i < ?) INSERT INTO blobs SELECT i, randomblob(1000) FROM n",
                     (rows,))
    conn.close()
    return path


def test_a_whole_file_passes_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    path = filled(tmp_path / "orders.db", 2000)
    assert quick_check(path).problem is None
    with path.open("r+b") as file:
        file.seek((path.stat().st_size // 2) & ~4095)
        file.write(bytes(range(256)) * 256)
    checked = quick_check(path, budget=5.0)
    assert checked.complete and checked.problem
    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.DatabaseError) as raised:
        conn.execute("SELECT sum(length(data)) FROM blobs").fetchall()
    assert is_damage(raised.value)
    assert not is_damage(sqlite3.OperationalError("database is locked"))


def test_not_a_database_is_named(tmp_path: Path) -> None:
    path = tmp_path / "users.db"
    path.write_bytes(b"not a database, " * 512)
    with pytest.raises(sqlite3.DatabaseError, match="file is not a database") as raised:
        quick_check(path)
    assert is_damage(raised.value) and not is_damage(raised.value, strictly=True)


def test_the_start_check_stops_at_its_budget(tmp_path: Path) -> None:
    path = filled(tmp_path / "bus.db", 60_000)  # 60 MB: its whole check takes ~50 ms
    checked = quick_check(path, budget=0.005)
    assert (checked.problem, checked.complete) == (None, False)
    assert checked.seconds < 1.0
    assert quick_check(path).complete


def test_the_way_out_depends_on_what_the_file_is(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert way_out("bus", data / "bus.db") == (
        "rebuild it from the services' outboxes: msshop repair bus")
    assert way_out("bus", data / "bus.db", running=True).endswith(
        "msshop stop bus; msshop repair bus")
    assert way_out("query", data / "query.db") == (
        f"it is a read model: move it aside and start query again, which rebuilds it from "
        f"the bus: mv {data}/query.db {data}/query.db.damaged; msshop start query (or msshop "
        f"up --detach)")
    assert way_out("orders", data / "orders" / "orders.db") == (
        "move it away and put back a copy taken while orders was stopped (it is the only "
        "copy of what orders stores); without one, start an empty sandbox (every service's "
        f"data is lost): msshop down; rm -r {data}; msshop up --detach")
    assert damage_message("bus", data / "bus.db", "page 7: bad header").startswith(
        f"its database {data}/bus.db is damaged (page 7: bad header); rebuild it")
