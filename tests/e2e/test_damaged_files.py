"""A damaged or lost database (issue 23, finding 5): found at start and named with its way
out, never a traceback; the bus's log rebuilt from the services' outboxes."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from msshop.contracts.events import Event
from msshop.instruments import event_pager
from msshop.instruments.checking import caught_up
from tests.conftest import Sandbox, msshop, running_sandbox, sandbox_env

DAMAGE = bytes(range(256)) * 256  # 64 KiB that no b-tree page begins with


def overwrite_middle(path: Path) -> None:
    """64 KiB of the file's middle overwritten, as a bad disk or a stray write would."""
    middle = (path.stat().st_size // 2) & ~4095
    with path.open("r+b") as file:
        file.seek(middle)
        file.write(DAMAGE)


def damage_under_a_running_service(path: Path) -> None:
    """Overwrite the middle of a file its service holds open, so that it reads the damage:
    the WAL copied into the file first (the middle is then read from the file), then one
    commit from here, which makes the service drop the pages it had cached."""
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("CREATE TABLE scratch (x)")
        conn.execute("DROP TABLE scratch")
    conn.close()
    overwrite_middle(path)


def log_of(sandbox: Sandbox) -> list[tuple[int, Event]]:
    return list(event_pager.read(sandbox.client().bus(), 0, 10_000_000, follow=False))


def one_line_error(stderr: str) -> str:
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    return stderr


def test_damaged_bus_log_is_named_then_rebuilt_from_the_outboxes(sandbox: Sandbox) -> None:
    sandbox.run("seed", "--users", "100", "--products", "20", "--orders", "5000", "--wait",
                check=True)
    poisoned = json.loads(sandbox.run("poison", "--json", check=True).stdout)["position"]
    client = sandbox.client()
    late = client.request("orders", "POST", "/orders?wait_published_ms=5000",
                          {"user_id": 2, "product_id": 2})
    assert late["event"]["position"] == poisoned + 1  # the lost position will be a gap
    caught_up(client, timeout=30)
    before = log_of(sandbox)
    bus_db = sandbox.root / "data" / "bus" / "bus.db"

    # damaged under the running bus: a request that reads it is told which file and what
    # to do, in one line, not a traceback
    damage_under_a_running_service(bus_db)
    status, answer = client.exchange("bus", "GET", "/health")
    assert status == 500 and answer["service"] == "bus"
    assert answer["error"] == (
        f"bus: its database {bus_db} is damaged (database disk image is malformed); rebuild "
        "it from the services' outboxes: msshop stop bus; msshop repair bus")
    running = sandbox.run("repair", "bus")
    assert running.returncode == 1
    assert "the bus is running: stop it first" in one_line_error(running.stderr)

    # stopped, it does not start again: one line naming the file and the way out
    sandbox.run("stop", "bus", check=True)
    bought = client.request("orders", "POST", "/orders", {"user_id": 1, "product_id": 1})
    refused = sandbox.run("start", "bus")
    assert refused.returncode == 1
    line = one_line_error(refused.stderr)
    assert f"its database {bus_db} is damaged" in line
    assert "rebuild it from the services' outboxes: msshop repair bus" in line
    checked = sandbox.run("check", "bus", "--json")
    assert checked.returncode == 1 and json.loads(checked.stdout)["files"][0]["ok"] is False

    repaired = json.loads(sandbox.run("repair", "bus", "--json", check=True).stdout)
    aside = Path(repaired["moved_aside"])
    assert aside.parent == bus_db.parent and aside.name.startswith("bus.db.damaged-")
    assert aside.read_bytes().count(DAMAGE) == 1  # kept as it was
    assert repaired["events"] == len(before) - 1 and repaired["head"] == len(before)
    assert repaired["lost"] == [[poisoned, poisoned]] and repaired["lost_count"] == 1
    assert {o["service"]: o["pending"] for o in repaired["outboxes"]}["orders"] == 1
    assert repaired["started"] and repaired["replayed"] is not None
    assert repaired["log"] != repaired["old_log"]

    # every event the outboxes held is back at its position, the one never sent after it;
    # the read model rebuilt from the new log: nothing lost or doubled
    caught_up(client, timeout=30)
    after = log_of(sandbox)
    kept = [(p, e.id) for p, e in before if p != poisoned]
    assert [(p, e.id) for p, e in after][:len(kept)] == kept
    assert [e.aggregate_id for _, e in after[len(kept):]] == [bought["id"]]
    assert len({e.id for _, e in after}) == len(after)
    sandbox.run("verify", check=True)
    answer = client.request("query", "GET", "/user-orders/1")
    assert bought["id"] in [o["order_id"] for o in answer["orders"]]


def test_bus_log_lost_with_its_file_is_rebuilt_while_the_sandbox_is_down(
        sandbox: Sandbox) -> None:
    sandbox.run("seed", "--users", "50", "--products", "10", "--orders", "500", "--wait",
                check=True)
    before = [(p, e.id) for p, e in log_of(sandbox)]
    sandbox.run("down", check=True)
    for name in ("bus.db", "bus.db-wal", "bus.db-shm"):
        (sandbox.root / "data" / "bus" / name).unlink(missing_ok=True)

    repaired = json.loads(sandbox.run("repair", "bus", "--json", check=True).stdout)
    assert repaired["moved_aside"] is None and repaired["old_log"] is None
    assert repaired["events"] == len(before) and repaired["lost"] == []
    assert not repaired["started"]
    assert repaired["next"] == ("start the sandbox, then rebuild the read model from the new "
                                "log: msshop up --detach; msshop replay query")
    sandbox.run("up", "--detach", check=True)
    sandbox.run("replay", "query", check=True)
    caught_up(sandbox.client(), timeout=30)
    assert [(p, e.id) for p, e in log_of(sandbox)] == before
    sandbox.run("verify", check=True)


def test_damaged_service_file_at_start_names_it_and_the_way_out(sandbox: Sandbox) -> None:
    sandbox.run("seed", "--users", "3000", "--products", "10", "--orders", "10", "--wait",
                check=True)
    users_db = sandbox.root / "data" / "users" / "users.db"
    sandbox.run("down", check=True)
    copy = users_db.with_name("users.db.copy")
    shutil.copyfile(users_db, copy)  # a copy taken while users was stopped
    overwrite_middle(users_db)

    refused = sandbox.run("up", "--detach")
    assert refused.returncode == 1
    line = one_line_error(refused.stderr)
    assert f"users could not start: its database {users_db} is damaged" in line
    assert ("move it away and put back a copy taken while users was stopped (it is the only "
            "copy of what users stores); without one, start an empty sandbox (every "
            f"service's data is lost): msshop down; rm -r {users_db.parent.parent}; msshop up "
            "--detach") in line
    inspected = json.loads(sandbox.run("inspect", "users", "--json", check=True).stdout)
    note = inspected["databases"][0]["note"]
    assert note.startswith("cannot be read: database disk image is malformed; move it away")

    copy.replace(users_db)  # the way out it named
    sandbox.run("up", "--detach", check=True)
    assert sandbox.client().request("users", "GET", "/users/3000")["id"] == 3000


def test_damaged_read_model_is_moved_aside_and_rebuilt_from_the_bus(sandbox: Sandbox) -> None:
    sandbox.run("seed", "--users", "500", "--products", "20", "--orders", "3000", "--wait",
                check=True)
    query_db = sandbox.root / "data" / "query" / "query.db"
    sandbox.run("stop", "query", check=True)
    overwrite_middle(query_db)
    refused = sandbox.run("start", "query")
    assert refused.returncode == 1
    line = one_line_error(refused.stderr)
    assert f"query could not start: its database {query_db} is damaged" in line
    assert (f"it is a read model: move it aside and start query again, which rebuilds it "
            f"from the bus: mv {query_db} {query_db}.damaged; msshop start query") in line

    query_db.rename(query_db.with_name("query.db.damaged"))  # the way out it named
    sandbox.run("start", "query", check=True)
    caught_up(sandbox.client(), timeout=30)
    sandbox.run("verify", check=True)


def test_a_log_emptied_before_the_repair_loses_nothing(sandbox: Sandbox) -> None:
    """The bus started again on an empty log (its file lost, no repair yet) and gave
    positions 1 and 2 again: the newer log's events keep them; the older two go after the
    head."""
    sandbox.run("seed", "--users", "50", "--products", "10", "--orders", "300", "--wait",
                check=True)
    before = log_of(sandbox)
    sandbox.run("stop", "bus", check=True)
    for name in ("bus.db", "bus.db-wal", "bus.db-shm"):
        (sandbox.root / "data" / "bus" / name).unlink(missing_ok=True)
    sandbox.run("start", "bus", check=True)
    client = sandbox.client()
    bought = [client.request("orders", "POST", "/orders?wait_published_ms=5000",
                             {"user_id": 1, "product_id": 1}) for _ in range(2)]
    assert [order["event"]["position"] for order in bought] == [1, 2]

    sandbox.run("stop", "bus", check=True)
    repaired = json.loads(sandbox.run("repair", "bus", "--json", check=True).stdout)
    assert repaired["events"] == len(before) + 2 and repaired["lost"] == []
    moved = {o["service"]: o["moved"] for o in repaired["outboxes"]}
    assert moved == {"users": 2, "products": 0, "orders": 0}
    caught_up(client, timeout=30)
    after = [(p, e.id) for p, e in log_of(sandbox)]
    assert after[:2] == [(1, bought[0]["event"]["id"]), (2, bought[1]["event"]["id"])]
    assert after[2:len(before)] == [(p, e.id) for p, e in before[2:]]
    assert after[len(before):] == [(len(before) + 1, before[0][1].id),
                                   (len(before) + 2, before[1][1].id)]
    sandbox.run("verify", check=True)


def test_nats_stream_lost_with_its_store_is_republished(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND="nats") as sandbox:
        sandbox.run("seed", "--users", "50", "--products", "10", "--orders", "300",
                    "--wait", check=True)
        poisoned = json.loads(sandbox.run("poison", "--json", check=True).stdout)["position"]
        client = sandbox.client()
        late = client.request("orders", "POST", "/orders?wait_published_ms=5000",
                              {"user_id": 2, "product_id": 2})
        caught_up(client, timeout=30)
        before = log_of(sandbox)
        sandbox.run("down", check=True)
        shutil.rmtree(sandbox.root / "data" / "nats")  # the stream lost with its store
        sandbox.run("up", "--detach", check=True)

        repaired = json.loads(sandbox.run("repair", "bus", "--json", check=True).stdout)
        assert (repaired["bus"], repaired["events"]) == ("nats", len(before) - 1)
        assert repaired["lost"] == [[poisoned, poisoned]]
        assert repaired["renumbered"] == 1  # the order after the lost position: one less
        assert repaired["replayed"] is not None
        caught_up(sandbox.client(), timeout=30)  # the sandbox's new ports
        kept = [e.id for p, e in before if p != poisoned]
        after = log_of(sandbox)
        assert [e.id for _, e in after] == kept and after[-1][1].aggregate_id == late["id"]
        assert [p for p, _ in after] == list(range(1, len(kept) + 1))
        sandbox.run("verify", check=True)
        again = sandbox.run("repair", "bus")
        assert again.returncode == 1
        assert f"the stream holds {len(kept):,} events" in one_line_error(again.stderr)


@contextlib.contextmanager
def small_filesystem(where: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes at `where` (needs root: skipped without it)."""
    where.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a small filesystem here: {made.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def test_a_repair_that_fills_the_disk_changes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.run("seed", "--users", "100", "--products", "10", "--orders", "3000", "--wait",
                check=True)
    sandbox.run("down", check=True)
    data = sandbox.root / "data"
    used = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
    bus_db = data / "bus" / "bus.db"
    # room for the sandbox's files, not for a second log
    with small_filesystem(tmp_path / "small", used + bus_db.stat().st_size // 2) as small:
        shutil.copytree(data, small / "data")
        env = sandbox_env(small)
        overwrite_middle(small / "data" / "bus" / "bus.db")
        damaged = (small / "data" / "bus" / "bus.db").read_bytes()
        full = msshop("repair", "bus", env=env)
        assert full.returncode == 1
        line = one_line_error(full.stderr)
        assert f"writing the new log {small / 'data' / 'bus' / 'bus.db.rebuilt'} failed" in line
        assert "nothing was changed" in line
        assert sorted(p.relative_to(small) for p in (small / "data").rglob("*")) == sorted(
            p.relative_to(sandbox.root) for p in data.rglob("*"))
        assert (small / "data" / "bus" / "bus.db").read_bytes() == damaged

        subprocess.run(["mount", "-o", f"remount,size={used * 3}", str(small)], check=True)
        repaired = json.loads(msshop("repair", "bus", "--json", env=env, check=True).stdout)
        assert repaired["lost"] == [] and repaired["events"] == 100 + 10 + 3000
