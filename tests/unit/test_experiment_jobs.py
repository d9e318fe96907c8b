"""The supervisor's experiment job (orchestrator/experiment_jobs.py), in process with a real
child standing in for `msshop experiment`: one at a time, its command line, what it may not
be asked, its end written for the dashboard, and stopped with the sandbox."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from msshop.contracts.errors import SandboxError
from msshop.runtime.orchestrator.experiment_jobs import ExperimentJobs, scenarios


class Launched:
    """Starts `sleep` (or a quick exit) in place of the experiment, and keeps its argv."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.argv: list[str] = []

    def __call__(self, argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
        self.argv = argv
        return subprocess.Popen([sys.executable, "-c",
                                 f"import time; time.sleep({self.seconds})"], **options)


def in_flight(job: ExperimentJobs) -> subprocess.Popen[bytes] | None:
    return job.running[1] if job.running is not None else None


def jobs(tmp_path: Path, launched: Launched) -> ExperimentJobs:
    return ExperimentJobs(tmp_path / "sandbox", python="python3", popen=launched,
                          now=lambda: datetime(2026, 12, 5, 13, 0, 0, tzinfo=UTC))


def test_one_run_at_a_time_and_its_end_is_written(tmp_path: Path) -> None:
    launched = Launched(0.2)
    job = jobs(tmp_path, launched)
    started = job.start(tmp_path / "ui", "products-outage", 5)
    assert started["id"] == "20261205T130000Z-products-outage"
    run = tmp_path / "ui" / "experiments" / started["id"]
    assert launched.argv == [
        "python3", "-m", "msshop", "experiment", "products-outage",
        "--sandbox", str(tmp_path / "sandbox"), "--report", str(run / "report"),
        "--progress", str(run / "progress.jsonl"), "--seconds", "5"]
    with pytest.raises(SandboxError, match="one at a time"):
        job.start(tmp_path / "ui", "slow-users", None)
    process = in_flight(job)
    assert process is not None
    process.wait(10)
    assert job.reap() == started["id"] and in_flight(job) is None
    assert (run / "ended").read_text() == "0\n"
    assert job.reap() is None


@pytest.mark.parametrize(("scenario", "seconds", "words"), [
    ("../etc", None, "not a scenario's name"), ("", None, "not a scenario's name"),
    (7, None, "not a scenario's name"), ("products-outage", 1, "seconds must be from 3"),
    ("products-outage", 601, "seconds must be from 3"),
    ("products-outage", True, "seconds must be from 3"),
    ("products-outage", "ten", "seconds must be from 3")])
def test_what_may_not_be_asked_is_one_line(tmp_path: Path, scenario: Any, seconds: Any,
                                           words: str) -> None:
    job = jobs(tmp_path, Launched(0))
    with pytest.raises(SandboxError, match=words):
        job.start(tmp_path / "ui", scenario, seconds)
    assert in_flight(job) is None and not (tmp_path / "ui").exists()


def test_the_run_stops_with_the_sandbox(tmp_path: Path) -> None:
    job = jobs(tmp_path, Launched(60))
    started = job.start(tmp_path / "ui", "bus-outage", None)
    process = in_flight(job)
    assert process is not None
    job.stop()
    assert process.poll() is not None and in_flight(job) is None
    ended = tmp_path / "ui" / "experiments" / started["id"] / "ended"
    assert ended.read_text().strip() != "0"


def test_the_scenarios_offered_are_the_shipped_ones() -> None:
    offered = {s["name"]: s for s in scenarios()}
    assert {"products-outage", "writes-crashes"} <= offered.keys()
    assert offered["writes-crashes"]["workload"] == "purchases"
    assert offered["products-outage"]["workload"] == "reads"
    assert offered["products-outage"]["seconds"] > 0


def test_a_run_that_cannot_start_is_one_line_and_leaves_no_folder(tmp_path: Path) -> None:
    def refused(argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
        raise PermissionError(13, "Permission denied", argv[0])

    job = ExperimentJobs(tmp_path / "sandbox", popen=refused)
    with pytest.raises(SandboxError, match=r"cannot start the experiment: .*Permission"):
        job.start(tmp_path / "ui", "products-outage", None)
    assert in_flight(job) is None
    assert list((tmp_path / "ui" / "experiments").iterdir()) == []
