"""Issue 23, finding 2: one broker, many sandboxes. Two sandboxes pointed at one external
nats-server (a class sharing one server) each keep their own stream and subjects, named for
the sandbox's identity (data/sandbox.id), and see only their own events; a third `up`
against a stream of another sandbox, or of the wrong shape, is refused with one line. The
sandbox's own log knows whose it is too. Real nats-servers, real sandboxes."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

from msshop.instruments.checking import caught_up
from tests.conftest import Sandbox, running_sandbox, sandbox_env, stop_sandbox
from tests.e2e.test_broker import nats_server  # noqa: F401  (the fixture: a server of our own)


def rows(sandbox: Sandbox) -> dict[str, int]:
    with sqlite3.connect(sandbox.root / "data" / "query" / "query.db") as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("users_replica", "products_replica", "orders_replica")}


def emails(sandbox: Sandbox) -> set[str]:
    with sqlite3.connect(sandbox.root / "data" / "query" / "query.db") as conn:
        return {e for (e,) in conn.execute("SELECT email FROM users_replica")}


def identity(root: Path) -> str:
    return (root / "data" / "sandbox.id").read_text().strip()


def up(root: Path, **env: str) -> tuple[Sandbox, str]:
    """`msshop up --detach` as a person runs it: the sandbox, and what up printed."""
    sandbox = Sandbox(root, sandbox_env(root, **env))
    result = sandbox.run("up", "--detach")
    assert result.returncode == 0, result.stdout + result.stderr
    return sandbox, result.stdout


def refused_up(root: Path, **env: str) -> str:
    """`msshop up --detach` that must fail: its one line, and nothing left running."""
    sandbox = Sandbox(root, sandbox_env(root, **env))
    result = sandbox.run("up", "--detach")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert not (root / "state.json").exists(), "nothing runs"
    return lines[0]


def test_two_sandboxes_on_one_server_each_see_only_their_own_events(
        tmp_path: Path, nats_server: str) -> None:  # noqa: F811
    first, said = up(tmp_path / "a", MSSHOP_BUS_BACKEND="nats", MSSHOP_BUS_URL=nats_server)
    try:
        a = identity(first.root)
        assert f"events on NATS stream msshop-{a} (subjects msshop.{a}.>)" in " ".join(
            said.split()), said
        second, _ = up(tmp_path / "b", MSSHOP_BUS_BACKEND="nats", MSSHOP_BUS_URL=nats_server)
        try:
            b = identity(second.root)
            assert a != b
            first.run("seed", "--users", "5", "--products", "3", "--orders", "20", check=True)
            second.run("signup", "--email", "only-b@example.com", "--name", "B", check=True)
            caught_up(first.client(), timeout=20)
            caught_up(second.client(), timeout=20)
            assert rows(first) == {"users_replica": 5, "products_replica": 3,
                                   "orders_replica": 20}
            assert rows(second) == {"users_replica": 1, "products_replica": 0,
                                    "orders_replica": 0}, "none of the other's events"
            assert "only-b@example.com" not in emails(first)
            assert first.client().bus_head() == 28 and second.client().bus_head() == 1
            for own in (a, b):  # each query service reads its own stream, and says whose
                readers = consumer_descriptions(nats_server, f"msshop-{own}")
                assert f"msshop sandbox {own}: msshop-query" in readers, readers
            for sandbox, own in ((first, a), (second, b)):
                status = sandbox.status()["bus"]
                assert (status["sandbox"], status["stream"]) == (own, f"msshop-{own}")
                text = sandbox.run("status", check=True).stdout
                assert f", stream msshop-{own} (not started by msshop)" in text
                verified = sandbox.run("verify")
                assert verified.returncode == 0, verified.stdout + verified.stderr

            # the third: pointed at the first one's stream, then at one of the wrong shape
            third = tmp_path / "c"
            said = refused_up(third, MSSHOP_BUS_BACKEND="nats", MSSHOP_BUS_URL=nats_server,
                              MSSHOP_BUS_STREAM=f"msshop-{a}")
            c = identity(third)
            server = nats_server.replace("shop:s3cret@", "")
            assert said == (f"error: stream msshop-{a} on {server} belongs to another "
                            f"sandbox ({a}), not this one ({c}); leave bus.stream unset to "
                            f"use this sandbox's own (msshop-{c})")
            make_stream(nats_server, "CLASS", ["class.>"], "workqueue")
            said = refused_up(third, MSSHOP_BUS_BACKEND="nats", MSSHOP_BUS_URL=nats_server,
                              MSSHOP_BUS_STREAM="CLASS")
            assert said == (f"error: stream CLASS on {server} has the wrong shape for msshop: "
                            f"subjects class.> (this sandbox's: msshop.{c}.>); workqueue "
                            "retention (events would go once read; limits needed); leave "
                            f"bus.stream unset to use this sandbox's own (msshop-{c})")
            assert rows(first)["orders_replica"] == 20, "the first one's events are as they were"
            assert first.client().bus_head() == 28
        finally:
            stop_sandbox(second)
    finally:
        stop_sandbox(first)


def test_a_stream_by_the_sandboxs_own_name_of_the_wrong_shape_is_refused(
        tmp_path: Path, nats_server: str) -> None:  # noqa: F811
    """Someone made a stream by this sandbox's name, keeping events an hour only. The
    identity is the one the sandbox keeps in data/sandbox.id (written here beforehand)."""
    root = tmp_path / "sandbox"
    (root / "data").mkdir(parents=True)
    (root / "data" / "sandbox.id").write_text("c0ffee\n")
    make_stream(nats_server, "msshop-c0ffee", ["msshop.c0ffee.>"], "limits", max_age=3600)
    said = refused_up(root, MSSHOP_BUS_BACKEND="nats", MSSHOP_BUS_URL=nats_server)
    server = nats_server.replace("shop:s3cret@", "")
    assert said == (f"error: stream msshop-c0ffee on {server} has the wrong shape for "
                    "msshop: max_age 3600 (older events would be dropped); name another one "
                    "with bus.stream (MSSHOP_BUS_STREAM), or delete that one if it is yours "
                    "to lose")


def test_a_sandbox_restarted_keeps_its_identity_its_stream_and_its_read_model(
        tmp_path: Path, nats_server: str) -> None:  # noqa: F811
    """state.json goes at `down`; data/sandbox.id stays, so the same stream is found again
    (not made anew) and the read model goes on from its position, not 'replaced'."""
    root = tmp_path / "sandbox"
    env = {"MSSHOP_BUS_BACKEND": "nats", "MSSHOP_BUS_URL": nats_server}
    with running_sandbox(root, **env) as sandbox:
        sandbox.run("seed", "--users", "3", "--products", "2", "--orders", "5", check=True)
        caught_up(sandbox.client(), timeout=10)
        before = identity(root)
    assert not (root / "state.json").exists()
    with running_sandbox(root, **env) as sandbox:
        assert identity(root) == before
        assert sandbox.status()["bus"]["stream"] == f"msshop-{before}"
        sandbox.run("buy", "--user", "1", "--product", "1", check=True)
        caught_up(sandbox.client(), timeout=10)
        assert sandbox.client().bus_head() == 11, "the same stream, one more event"
        assert sandbox.client().health("query")["consumer"]["log_problem"] is None
        assert rows(sandbox)["orders_replica"] == 6


def test_the_log_of_another_sandbox_is_named_and_refused(tmp_path: Path) -> None:
    """The sandbox's own SQLite log knows whose it is: bus.db put into another sandbox's
    data folder does not start there (one line, the fix), and a restart of the same sandbox
    finds its own log again."""
    with running_sandbox(tmp_path / "a") as first:
        first.run("signup", "--email", "a@example.com", "--name", "A", check=True)
        caught_up(first.client(), timeout=10)
    other = identity(tmp_path / "a")
    with running_sandbox(tmp_path / "b") as second:  # its own log, its own identity
        mine = identity(second.root)
    with running_sandbox(tmp_path / "b"):  # restarted: the same log is its own
        assert identity(tmp_path / "b") == mine
    for suffix in ("", "-wal", "-shm"):
        source = tmp_path / "a" / "data" / "bus" / f"bus.db{suffix}"
        target = tmp_path / "b" / "data" / "bus" / f"bus.db{suffix}"
        target.unlink(missing_ok=True)
        if source.exists():
            shutil.copyfile(source, target)
    said = refused_up(tmp_path / "b")
    bus_db = tmp_path / "b" / "data" / "bus" / "bus.db"
    assert said.startswith("error: bus failed to start (exited with code 3): "), said
    assert said.endswith(f"bus could not start: {bus_db} is the log of another sandbox "
                         f"({other}), not this one ({mine}); put this sandbox's own back, "
                         "or move it away to start an empty log and then rebuild the read "
                         "model: msshop replay query; see: msshop logs bus"), said


def consumer_descriptions(url: str, stream: str) -> list[str]:
    """What the server says of the consumers on `stream` (the reader's are ordered ones)."""
    import nats

    async def ask() -> list[str]:
        nc = await nats.connect(url)
        try:
            return [info.config.description or ""
                    for info in await nc.jetstream().consumers_info(stream)]
        finally:
            await nc.close()

    return asyncio.run(ask())


def make_stream(url: str, name: str, subjects: list[str], retention: str,
                max_age: float = 0) -> None:
    """A stream made by hand on the server, as its operator (or another tool) might."""
    import nats
    from nats.js.api import RetentionPolicy, StreamConfig

    async def make() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().add_stream(StreamConfig(
                name=name, subjects=subjects, retention=RetentionPolicy(retention),
                max_age=max_age or None))
        finally:
            await nc.close()

    asyncio.run(make())
