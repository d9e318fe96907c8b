from __future__ import annotations

from pathlib import Path

from tests.conftest import msshop, sandbox_env


def test_demo_runs_through_and_leaves_nothing_behind(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = sandbox_env(tmp_path / "unused", TMPDIR=str(scratch))
    result = msshop("demo", env=env, cwd=tmp_path, check=True)
    out = result.stdout
    for line in ("$ msshop up --detach", "$ msshop seed --users 100 --products 40 --orders 1000",
                 "orders       1,000 created", "$ msshop products --limit 8",
                 "$ msshop status", "$ msshop down",
                 "is down: stopped bus, users, products, orders, query"):
        assert line in out, line
    assert list(scratch.iterdir()) == [], "the demo's temporary sandbox is removed"
    assert not (tmp_path / "unused").exists() and not (tmp_path / "sandbox").exists()
