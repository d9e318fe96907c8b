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
    assert set(latency) == {"floor", "replicated", "direct-call", "direct-call naive"}
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
    assert list(scratch.iterdir()) == [], "the bench's sandbox is removed"
    assert "bench: starting a sandbox of its own" in result.stderr
