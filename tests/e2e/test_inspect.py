"""`msshop inspect` through the real command: each service's own database read-only (rows,
bytes, schemas), what replication costs in space, a table's first rows; while the sandbox
runs and after `msshop down`; every way it can be asked wrongly; and that looking changed
no file and created none."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from msshop.instruments.checking import caught_up
from tests.cli_in_process import msshop_in_process
from tests.conftest import Sandbox, running_sandbox, sandbox_env

SEEDED = {"users": 30, "products": 10, "orders": 300}
EVENTS = sum(SEEDED.values())  # one event per user, product and order
SEED = ("seed", "--users", "30", "--products", "10", "--orders", "300")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A running sandbox, seeded through the CLI, with the read model caught up (so it is
    idle: nothing writes while the tests look)."""
    with running_sandbox(tmp_path_factory.mktemp("inspect") / "sandbox") as running:
        running.run(*SEED, check=True)
        caught_up(running.client(), timeout=20)
        yield running


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0].removeprefix("error: ")


def within_80_columns(text: str) -> None:
    for line in text.splitlines():
        assert len(line) <= 80, line
        assert line == line.rstrip(), f"trailing spaces: {line!r}"


def files(data: Path, with_shm: bool = True) -> dict[str, tuple[int, str]]:
    """Every file in data/: its mtime and a hash of its bytes. A running service's -shm is
    the WAL's index in shared memory, where every reader marks what it reads: left out
    while the sandbox runs."""
    return {str(path.relative_to(data)): (path.stat().st_mtime_ns,
                                          hashlib.sha256(path.read_bytes()).hexdigest())
            for path in sorted(data.rglob("*"))
            if path.is_file() and (with_shm or not path.name.endswith("-shm"))}


def settled(data: Path) -> dict[str, tuple[int, str]]:
    """`files` once they have stopped changing: each service's checkpointer copies its
    write-ahead log into its file within ~0.1 s of the last commit (checkpoint.py)."""
    deadline = time.monotonic() + 5
    last = files(data, with_shm=False)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = files(data, with_shm=False)
        if now == last:
            return now
        last = now
    raise AssertionError("the data files were still changing after 5 s")


def tables_of(document: dict[str, Any], service: str) -> dict[str, dict[str, Any]]:
    databases = {d["service"]: d for d in document["databases"]}
    return {t["name"]: t for t in databases[service]["tables"]}


def test_text_shows_every_database_and_what_replication_costs(seeded: Sandbox) -> None:
    before = settled(seeded.root / "data")
    result = seeded.run("inspect", check=True)
    text = result.stdout
    within_80_columns(text)
    assert text.startswith(f"sandbox {seeded.root}\nrunning; the bus: msshop's log\n")
    assert "the operator looking, not a service" in text
    for service in ("bus", "users", "products", "orders", "query"):
        assert f"\n{service}  data/{service}/{service}.db  " in text
    events = next(line for line in text.splitlines() if line.startswith("  events "))
    assert events.split()[1] == f"{EVENTS:,}", events
    assert "what replication costs in space" in text
    for replica, source in (("users_replica", "users.users"),
                            ("products_replica", "products.products"),
                            ("orders_replica", "orders.orders")):
        line = next(line for line in text.splitlines()
                    if line.startswith(f"  {replica} ") and f"  {source}  " in line)
        assert line.endswith("x"), line  # the ratio, e.g. 1.12x
    assert "the bus's log (bus.db events): " in text
    assert files(seeded.root / "data", with_shm=False) == before, "inspecting wrote nothing"


def test_json_counts_equal_what_was_seeded_with_the_read_models_ratio(seeded: Sandbox
                                                                     ) -> None:
    before = settled(seeded.root / "data")
    document = json.loads(seeded.run("inspect", "--json", check=True).stdout)
    assert document["sandbox"] == str(seeded.root)
    assert document["running"] is True and document["bus"] == "log"
    assert [d["service"] for d in document["databases"]] == [
        "bus", "users", "products", "orders", "query"]
    for database in document["databases"]:
        path = seeded.root / "data" / database["service"] / f"{database['service']}.db"
        assert database["path"] == str(path) and database["exists"] is True
        assert database["opened"] == "read-only" and database["note"] is None
        assert database["bytes"] == database["db_bytes"] + database["wal_bytes"] > 0
        for table in database["tables"]:
            assert table["schema"].startswith("CREATE TABLE")
            if document["dbstat"]:
                assert table["bytes"] >= table["index_bytes"] >= 0
                assert table["bytes"] % database["page_size"] == 0
    for service, count in SEEDED.items():
        assert tables_of(document, service)[service]["rows"] == count
        assert tables_of(document, service)["outbox"]["rows"] == count, "the outbox too"
        assert tables_of(document, "query")[f"{service}_replica"]["rows"] == count
    assert tables_of(document, "bus")["events"]["rows"] == EVENTS
    assert set(tables_of(document, "query")) >= {"consumer_offsets", "dead_letters"}
    assert "orders_by_user" in tables_of(document, "orders")["orders"]["indexes"]

    replication = document["replication"]
    assert [(t["replica"], t["source"]) for t in replication["tables"]] == [
        ("users_replica", "users.users"), ("products_replica", "products.products"),
        ("orders_replica", "orders.orders")]
    if document["dbstat"]:  # this Python's SQLite has it (else the figures are null)
        assert replication["note"] is None
        assert replication["read_model_bytes"] == sum(
            t["replica_bytes"] for t in replication["tables"])
        assert replication["ratio"] == pytest.approx(
            replication["read_model_bytes"] / replication["source_bytes"])
        assert replication["bus_log_bytes"] == tables_of(document, "bus")["events"]["bytes"]
        assert replication["outbox_bytes"] == sum(
            tables_of(document, s)["outbox"]["bytes"] for s in SEEDED)
    assert files(seeded.root / "data", with_shm=False) == before, "inspecting wrote nothing"


def test_one_service_shows_its_schemas(seeded: Sandbox) -> None:
    text = seeded.run("inspect", "orders", check=True).stdout
    within_80_columns(text)
    assert "\norders  data/orders/orders.db  " in text and "\nusers  " not in text
    assert "\nschemas\n" in text and "    CREATE TABLE orders (\n" in text
    assert "    CREATE TABLE outbox (\n" in text
    assert "what replication costs" not in text
    document = json.loads(seeded.run("inspect", "orders", "--json", check=True).stdout)
    assert [d["service"] for d in document["databases"]] == ["orders"]
    assert document["replication"] is None


def test_the_first_rows_of_a_table(seeded: Sandbox) -> None:
    rows = json.loads(seeded.run("inspect", "orders", "--table", "orders", "--limit", "3",
                                 "--json", check=True).stdout)
    assert rows["service"] == "orders" and rows["table"] == "orders"
    assert rows["path"] == str(seeded.root / "data" / "orders" / "orders.db")
    assert rows["total_rows"] == SEEDED["orders"] and rows["limit"] == 3
    assert [row["id"] for row in rows["rows"]] == [1, 2, 3]
    assert [c["name"] for c in rows["columns"]][:3] == ["id", "user_id", "product_id"]
    assert set(rows["rows"][0]) == {c["name"] for c in rows["columns"]}

    text = seeded.run("inspect", "orders", "--table", "orders", "--limit", "3",
                      check=True).stdout
    within_80_columns(text)
    lines = text.splitlines()
    assert lines[0] == ("orders.orders: the first 3 of 300 rows (data/orders/orders.db, "
                        "read-only)")
    # (issue 26's status and reason make nine columns: the widest are cut to fit)
    assert lines[1].startswith("id  user_id  product") and len(lines) == 5

    # more columns than fit side by side: a block per row; the events' bodies are JSON text
    events = json.loads(seeded.run("inspect", "bus", "--table", "events", "--limit", "2",
                                   "--json", check=True).stdout)
    assert [row["position"] for row in events["rows"]] == [1, 2]
    # the users and products relays are not ordered against each other: either comes first
    assert json.loads(str(events["rows"][0]["body"]))["type"] in ("UserSignedUp",
                                                                 "ProductCreated")
    text = seeded.run("inspect", "bus", "--table", "events", "--limit", "2",
                      check=True).stdout
    within_80_columns(text)
    assert "\nrow 1\n  position " in text and "\nrow 2\n" in text

    default = json.loads(seeded.run("inspect", "query", "--table", "orders_replica",
                                    "--json", check=True).stdout)
    assert len(default["rows"]) == 10 and default["limit"] == 10


@pytest.mark.parametrize(("args", "code", "says"), [
    (("inspect", "nope"), 2,
     "unknown service 'nope'; choose one of: bus, users, products, orders, query"),
    (("inspect", "orders", "--table", "nope"), 2,
     "orders has no table 'nope'; its tables are: orders, outbox, consumer_offsets, "
     "dead_letters, saga_steps, sagas"),
    (("inspect", "orders", "--table", "orders", "--limit", "0"), 2,
     "--limit 0 is out of range; choose 1 to 1000"),
    (("inspect", "orders", "--table", "orders", "--limit", "1001"), 2,
     "--limit 1001 is out of range; choose 1 to 1000"),
    (("inspect", "--limit", "3"), 2, "--limit N goes with --table T"),
    (("inspect", "--table", "orders"), 2, "--table orders needs the service whose database "
                                          "holds it, e.g.: msshop inspect orders --table orders"),
])
def test_bad_input_is_one_line(seeded: Sandbox, args: tuple[str, ...], code: int,
                               says: str) -> None:
    result = msshop_in_process(*args, env=seeded.env)  # reads the files; starts nothing
    assert result.returncode == code
    assert one_error_line(result) == says and result.stdout == ""


def test_no_sandbox_at_all(tmp_path: Path) -> None:
    env = sandbox_env(tmp_path / "nothing")
    for args in (("inspect",), ("inspect", "orders", "--table", "orders"),
                 ("inspect", "--json")):
        result = msshop_in_process(*args, env=env, cwd=tmp_path)
        assert result.returncode == 1
        assert one_error_line(result) == (f"no sandbox in {tmp_path / 'nothing'} (no data/ "
                                          "there); start one with: msshop up --detach")
    assert not (tmp_path / "nothing").exists(), "looking created nothing"
    (tmp_path / "nothing" / "data").mkdir(parents=True)
    result = msshop_in_process("inspect", "users", env=env, cwd=tmp_path)
    assert result.returncode == 1 and one_error_line(result).startswith(
        "users has no database yet (")
    assert one_error_line(result).endswith("start one with: msshop up --detach")
    assert list((tmp_path / "nothing" / "data").iterdir()) == []


def test_after_down_the_files_are_read_as_they_are_and_left_so(sandbox: Sandbox) -> None:
    sandbox.run("seed", "--users", "5", "--products", "3", "--orders", "20", check=True)
    caught_up(sandbox.client(), timeout=20)
    sandbox.run("down", check=True)
    data = sandbox.root / "data"
    before = files(data)
    assert not any(name.endswith(("-wal", "-shm")) for name in before), \
        "closed cleanly: every commit is in the file"

    document = json.loads(sandbox.run("inspect", "--json", check=True).stdout)
    assert document["running"] is False
    assert {d["opened"] for d in document["databases"]} == {"read-only, immutable"}
    assert tables_of(document, "orders")["orders"]["rows"] == 20
    assert tables_of(document, "query")["orders_replica"]["rows"] == 20
    assert tables_of(document, "bus")["events"]["rows"] == 28
    assert document["replication"]["tables"][2]["source"] == "orders.orders"
    text = sandbox.run("inspect", check=True).stdout
    within_80_columns(text)
    assert text.startswith(f"sandbox {sandbox.root}\nnot running; the bus: msshop's log\n")
    rows = json.loads(sandbox.run("inspect", "users", "--table", "users", "--limit", "2",
                                  "--json", check=True).stdout)
    assert [row["id"] for row in rows["rows"]] == [1, 2] and rows["total_rows"] == 5

    assert files(data) == before, "no file written, none created (no -wal, no -shm)"


def test_on_nats_there_is_no_bus_db_and_it_says_so(shared_nats_sandbox: Sandbox) -> None:
    sandbox = shared_nats_sandbox
    text = sandbox.run("inspect", "bus", check=True).stdout
    within_80_columns(text)
    assert "\nrunning; the bus: NATS JetStream\n" in text and "there is no bus.db" in text
    document = json.loads(sandbox.run("inspect", "--json", check=True).stdout)
    assert document["bus"] == "nats"
    bus = document["databases"][0]
    assert bus["service"] == "bus" and bus["exists"] is False and bus["tables"] == []
    assert "there is no bus.db" in bus["note"]
    assert document["replication"]["bus_log_bytes"] is None
    assert "JetStream" in document["replication"]["note"]
    result = sandbox.run("inspect", "bus", "--table", "events")
    assert result.returncode == 1 and "there is no bus.db" in one_error_line(result)
