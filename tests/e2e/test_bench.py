from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import msshop, sandbox_env


def test_bench_quick_measures_every_strategy_in_its_own_sandbox(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = msshop("bench", "--quick", "--json", env=sandbox_env(tmp_path / "unused",
                                                                  TMPDIR=str(scratch)),
                    timeout=300, check=True)
    report = json.loads(result.stdout)
    latency = report["latency_ms"]
    assert set(latency) == {"floor", "floor rows", "replicated", "direct-call",
                            "direct-call naive"}
    for figures in latency.values():
        assert 0 < figures["p50"] <= figures["p99"]
    for size in ("1", "10", "100", "1000"):
        by = report["by_orders"][size]
        assert (by["replicated"]["stages"], by["direct-call"]["stages"]) == (0, 2), size
    assert report["purchases"]["count"] == 300 and report["lag_ms"]["count"] == 300
    assert report["up_ms"] > 0
    assert report["sustained"]["clients"] == 16 and report["sustained"]["confirmed"] > 0
    assert report["sustained"]["lag_ms"]["count"] >= report["sustained"]["confirmed"], \
        "every confirmed purchase reached the read model"
    assert report["paced"]["target_per_second"] == 1000
    assert report["paced"]["lag_ms"]["count"] == report["paced"]["confirmed"]
    assert report["rebuild"]["events"] >= report["sustained"]["confirmed"]
    assert list(report["writes"]) == ["monolith", "direct-call", "saga", "saga-orchestrated"]
    for strategy, writes in report["writes"].items():
        assert writes["confirmed"] > 0 and writes["failed"] == 0, (strategy, writes)
        assert writes["target_per_second"] == 500 and writes["paced_per_second"] > 0
        outcome = writes["outcome_ms"]
        assert outcome["count"] > 0 and 0 < outcome["p50"] <= outcome["p99"], strategy
    assert list(scratch.iterdir()) == [], "the bench's sandbox is removed"
    assert "bench: starting a sandbox of its own" in result.stderr


def test_bench_on_both_buses_reports_them_side_by_side(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = msshop("bench", "--quick", "--bus", "log,nats",
                    env=sandbox_env(tmp_path / "unused", TMPDIR=str(scratch)),
                    timeout=300, check=True)
    text = result.stdout
    assert "on the log bus" in text and "on the nats bus" in text
    table = text[text.index("side by side"):].splitlines()
    assert table[1].split() == ["figure", "log", "nats"]
    for row in ("replicated p50 / floor rows", "direct-call p50 / floor",
                "lag p50 at 1,000/s, ms", "purchases/s, 16 clients", "rebuild, events/s",
                "saga purchases/s", "saga-orchestrated purchases/s",
                "direct-call outcome p99 ms", "saga-orchestrated outcome p99 ms",
                "up -> healthy, ms"):
        line = next(line for line in table if line.startswith(row))
        figures = line[len(row):].split()
        assert len(figures) == 2 and all(float(f.rstrip("x").replace(",", "")) > 0
                                         for f in figures), line
    assert "[nats] starting a sandbox of its own, on the nats bus" in text
    assert list(scratch.iterdir()) == [], "both sandboxes are removed"
