"""Every scripted demo, run straight through as CI would, in an 80-column terminal; the
runner itself checks each step's expected line, so a demo that no longer lands fails
here."""

from __future__ import annotations

from pathlib import Path

import pytest

from msshop.instruments import demo
from tests.cli_in_process import msshop_in_process
from tests.conftest import msshop, sandbox_env

KEY_LINES = {
    "lesson": ["$ msshop query --user 7 --strategy monolith", "breaks encapsulation",
               "one column = ", "publish @", "append @", "applied in the read model",
               "$ msshop compare --user 7", "= monolith", "replicated touched query: query.db"],
    "outage": ["$ msshop kill products", "error: products is down: connection refused",
               "partial: the product titles missing", "freshness: read model at bus position"],
    "lag": ["waits in the orders outbox", "the bus is unreachable", "verified:",
            "--after", "caught up"],
    "replay": ["rebuilt the read model from position 0", "verified:"],
    "isolation": ["$ msshop trespass users --into orders", "refused to open",
                  "unknown event type 'Poison'", "verified:"],
    "broker": ["$ msshop up --detach --bus nats --bus-nodes 3", "NATS, 3 nodes, stream on 3",
               "$ msshop kill bus-2", "orders      40,000 created", "verified:"],
    "tradeoffs": ["$ msshop experiment products-outage --seconds 8",
                  "direct-call: reads answered each second, %", "products killed, 2.0-",
                  "users +200 ms", "valid: nothing lost, nothing twice"],
    "saga": ["$ msshop buy --user 21 --product 2 --write monolith", "orders killed by SIGKILL",
             "with no order", "apply OrderPlaced", "apply StockTaken", "apply CreditTaken",
             "not enough credit", "confirmed (saga-orchestrated)",
             "placed; the stock not taken yet", "TakeStock sent", "no saga is unfinished",
             "saga-orchestrated: valid", "direct-call: invalid"],
}


def test_every_shipped_demo_is_tested() -> None:
    assert sorted(demo.available()) == sorted(KEY_LINES)


@pytest.mark.parametrize("name", sorted(KEY_LINES))
def test_demo_runs_through_and_leaves_nothing_behind(name: str, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = sandbox_env(tmp_path / "unused", TMPDIR=str(scratch), COLUMNS="80")
    result = msshop("demo", name, "--no-pause", "--speed", "100", env=env, cwd=tmp_path,
                    timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for line in KEY_LINES[name]:
        assert line in result.stdout, line
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert [line for line in lines if line != line.rstrip()] == [], "no trailing spaces"
    assert result.stdout.rstrip().endswith(f"demo '{name}' done: "
                                           f"{len(demo.load(name).steps)} steps, nothing left "
                                           "behind")
    assert list(scratch.iterdir()) == [], "the demo's temporary sandbox is removed"
    assert not (tmp_path / "unused").exists() and not (tmp_path / "sandbox").exists()


def test_an_unknown_demo_is_named_with_the_choices(tmp_path: Path) -> None:
    result = msshop_in_process("demo", "nope", "--no-pause", env=sandbox_env(tmp_path / "s"))
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: no demo named 'nope'; choose one of: broker, "
                                     "isolation, lag, lesson, outage, replay, saga, tradeoffs")
