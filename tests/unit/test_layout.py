"""An old sandbox's databases (data/<service>.db, side by side) moved into a directory each,
on real files: whole, with their -wal and -shm, resumed after a move cut short, and never
over a file already there."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from msshop.contracts.errors import SandboxError
from msshop.contracts.topology import BY_NAME, NAMES
from msshop.runtime.orchestrator.layout import move_to_service_dirs
from tests.cli_in_process import msshop_in_process
from tests.conftest import sandbox_env


@pytest.fixture
def kept_open() -> Iterator[list[sqlite3.Connection]]:
    """Connections a test leaves open (as a killed service would), closed at its end."""
    connections: list[sqlite3.Connection] = []
    yield connections
    for conn in connections:
        conn.close()


def old_sandbox(root: Path, kept_open: list[sqlite3.Connection]) -> dict[str, bytes]:
    """Every service's database at data/<service>.db with its rows only in its WAL: the
    connections stay open (no checkpoint at close), as a service killed would leave them."""
    (root / "data").mkdir(parents=True)
    contents: dict[str, bytes] = {}
    for name in NAMES:
        path = BY_NAME[name].legacy_db_path(root)
        conn = sqlite3.connect(path)
        kept_open.append(conn)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("CREATE TABLE t (n INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(3)])
        conn.commit()
        for end in ("", "-wal", "-shm"):
            contents[name + end] = Path(f"{path}{end}").read_bytes()
    return contents


def rows_of(root: Path, name: str) -> int:
    with sqlite3.connect(BY_NAME[name].db_path(root)) as conn:
        (count,) = conn.execute("SELECT count(*) FROM t").fetchone()
    return int(count)


def test_each_database_moves_whole_into_its_own_directory(
        tmp_path: Path, kept_open: list[sqlite3.Connection]) -> None:
    root = tmp_path / "sandbox"
    before = old_sandbox(root, kept_open)
    assert all(Path(f"{BY_NAME[n].legacy_db_path(root)}-wal").stat().st_size for n in NAMES)

    assert move_to_service_dirs(root) == list(NAMES)

    for name in NAMES:
        new = BY_NAME[name].db_path(root)
        for end in ("", "-wal", "-shm"):
            assert Path(f"{new}{end}").read_bytes() == before[name + end]
        assert not list((root / "data").glob(f"{name}.db*"))
        assert rows_of(root, name) == 3
    assert sorted(p.name for p in (root / "data").iterdir()) == sorted(NAMES)
    assert move_to_service_dirs(root) == []  # the new layout: nothing to do


def test_a_move_cut_short_is_finished_by_the_next(
        tmp_path: Path, kept_open: list[sqlite3.Connection]) -> None:
    root = tmp_path / "sandbox"
    before = old_sandbox(root, kept_open)
    # stopped after the users' -wal went into the staging directory, before the rest
    staging = root / "data" / ".users.moving"
    staging.mkdir()
    old = BY_NAME["users"].legacy_db_path(root)
    Path(f"{old}-wal").rename(staging / "users.db-wal")
    assert not BY_NAME["users"].db_path(root).exists(), "nothing half there meanwhile"

    assert "users" in move_to_service_dirs(root)
    new = BY_NAME["users"].db_path(root)
    assert Path(f"{new}-wal").read_bytes() == before["users-wal"]
    assert not staging.exists()
    assert rows_of(root, "users") == 3


def test_into_a_directory_there_already_and_never_over_a_file(
        tmp_path: Path, kept_open: list[sqlite3.Connection]) -> None:
    root = tmp_path / "sandbox"
    old_sandbox(root, kept_open)
    query = BY_NAME["query"].data_dir(root)
    query.mkdir()
    (query / "service.json").write_text("{}")  # a program of your own ran as query
    assert "query" in move_to_service_dirs(root)
    assert (query / "service.json").read_text() == "{}"
    assert rows_of(root, "query") == 3

    root2 = tmp_path / "two"
    old_sandbox(root2, kept_open)
    BY_NAME["orders"].data_dir(root2).mkdir()
    taken = BY_NAME["orders"].db_path(root2)
    taken.write_bytes(b"someone's")
    with pytest.raises(SandboxError) as refused:
        move_to_service_dirs(root2)
    assert str(refused.value) == (
        f"orders's database is in two places: {BY_NAME['orders'].legacy_db_path(root2)} (the "
        f"layout before each service had a directory) and {taken}; move away the one you "
        f"do not want and run the command again")
    assert taken.read_bytes() == b"someone's"
    assert BY_NAME["orders"].legacy_db_path(root2).exists()


@pytest.mark.parametrize("command", [("inspect",), ("check",), ("check", "orders")])
def test_a_command_that_writes_nothing_names_the_way_over_and_moves_nothing(
        tmp_path: Path, kept_open: list[sqlite3.Connection], command: tuple[str, ...]) -> None:
    """`inspect` and `check` promise to write nothing: on an old sandbox they say how to
    move it over, in one line, rather than report every database missing."""
    root = tmp_path / "sandbox"
    before = old_sandbox(root, kept_open)
    result = msshop_in_process(*command, env=sandbox_env(root))
    assert result.returncode == 1, result
    assert result.stderr.strip().splitlines() == [
        f"error: this sandbox keeps its databases side by side ({Path('data', 'bus.db')}…), "
        "the layout before each service had a directory of its own; `msshop up` moves them "
        f"over (nothing is lost), then run `msshop {command[0]}` again"]
    for name in NAMES:  # nothing moved, nothing written
        assert BY_NAME[name].legacy_db_path(root).read_bytes() == before[name]
        assert not BY_NAME[name].data_dir(root).exists()
