"""The isolation guard, in a real forked process (audit hooks cannot be removed, so the
guard must never be installed in the test runner itself)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import multiprocess

from msshop.runtime.platform.db import guard_connection, install_isolation_guard, open_database


def _in_guarded_child(own: Path, other: Path, queue: Any) -> None:
    reports: list[str] = []
    install_isolation_guard("orders", own, reports.append)
    results: dict[str, Any] = {}
    conn = open_database(own, ["CREATE TABLE orders (id INTEGER PRIMARY KEY)"])
    guard_connection("orders", conn, own, reports.append)
    results["own_file_opens"] = conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
    try:
        sqlite3.connect(other)
        results["connect"] = "allowed"
    except PermissionError as exc:
        results["connect"] = str(exc)
    try:
        sqlite3.connect(f"file:{other}?mode=ro", uri=True)
        results["connect_uri"] = "allowed"
    except PermissionError as exc:
        results["connect_uri"] = str(exc)
    for door, sql, params in (("attach", f"ATTACH DATABASE '{other}' AS theirs", ()),
                              ("attach_param", "ATTACH DATABASE ? AS theirs", (str(other),))):
        try:
            conn.execute(sql, params)
            results[door] = "allowed"
        except sqlite3.DatabaseError as exc:
            results[door] = str(exc)
    results["memory_still_works"] = sqlite3.connect(":memory:").execute("SELECT 1").fetchone()
    results["reports"] = reports
    queue.put(results)


def test_guard_refuses_other_files_by_connect_and_by_attach(tmp_path: Path) -> None:
    own, other = tmp_path / "orders.db", tmp_path / "users.db"
    sqlite3.connect(other).execute("CREATE TABLE users (id INTEGER)").connection.close()
    context = multiprocess.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_in_guarded_child, args=(own, other, queue))
    child.start()
    results = queue.get(timeout=30)
    child.join(10)

    assert results["own_file_opens"] is True
    expected = (f"isolation guard: service 'orders' may open only its own database {own}; "
                f"refused to open {other}")
    assert results["connect"] == expected
    assert results["connect_uri"] == expected
    assert results["attach"] == "not authorized"
    assert results["attach_param"] == "not authorized"
    assert results["memory_still_works"] == (1,)
    assert results["reports"] == [
        expected, expected,
        f"isolation guard: service 'orders' may open only its own database {own}; "
        f"refused to ATTACH {other}",
        f"isolation guard: service 'orders' may open only its own database {own}; "
        "refused to ATTACH a file given as a parameter",
    ]
