"""Experiments from the page (issue 28): pick a scenario, watch its charts fill in as it
runs, read its verdict; past runs listed, each report one click away.

The supervisor runs them (orchestrator/experiment_jobs.py: `msshop experiment NAME
--sandbox …`, one at a time) into this dashboard's own directory, experiments/<id>/, which
is the one directory its kernel rule lets it read: here its files are read back. A look
(gather.py) carries the newest run as a RunView while a tab watches: what the run said,
each second's answered and failed requests by strategy (its --progress file), and once it
has ended, its verdict.
"""

from __future__ import annotations

import json
from contextlib import suppress
from pathlib import Path
from typing import Any

import msgspec

from msshop.contracts.progress import Tally
from msshop.runtime.services.dashboard.guard import Refused

RUNS = "experiments"  # experiment_jobs.py's folder of runs, in this dashboard's directory
SAID_SHOWN = 14  # the last lines a run said, on the page
LISTED = 20  # past runs listed


class ScenarioChoice(msgspec.Struct):
    """A scenario the page offers (the supervisor's op "scenarios" lists them)."""

    name: str
    title: str
    workload: str  # reads | purchases
    seconds: float  # its own length


class RunView(msgspec.Struct):
    """One run as the page draws it."""

    id: str
    scenario: str
    state: str  # running | ended | failed (it ended with no report)
    verdict: str | None = None  # valid | invalid | unknown, once it has ended
    verdicts: dict[str, str] = {}  # by strategy (a purchases run: each its own)
    said: list[str] = []  # its last lines, as the terminal shows them
    seconds: list[dict[str, Tally]] = []  # each second of the load: by strategy
    strategies: list[str] = []
    error: str | None = None  # why it failed: its stderr's last line
    report: bool = False  # its report page can be opened (GET /report?id=)


class Runs:
    def __init__(self, ui_dir: Path) -> None:
        self.root = ui_dir / RUNS
        self._known: dict[str, RunView] = {}  # runs that have ended do not change

    def ids(self) -> list[str]:
        """Every run's id, newest first (an id begins with its start, UTC)."""
        with suppress(OSError):
            return sorted((p.name for p in self.root.iterdir() if p.is_dir()), reverse=True)
        return []

    def listed(self) -> list[RunView]:
        return [self.view(run_id, detail=False) for run_id in self.ids()[:LISTED]]

    def latest(self) -> RunView | None:
        ids = self.ids()
        return self.view(ids[0]) if ids else None

    def view(self, run_id: str, detail: bool = True) -> RunView:
        if (known := self._known.get(run_id)) is not None:
            return known if detail else _brief(known)
        directory = self.root / run_id
        scenario = run_id.split("-", 1)[1] if "-" in run_id else run_id
        said, seconds = _progress(directory / "progress.jsonl")
        run = RunView(run_id, scenario, "running", said=said[-SAID_SHOWN:],
                      seconds=[s for _, s in sorted(seconds.items())],
                      strategies=sorted({k for s in seconds.values() for k in s}))
        if (directory / "ended").exists():
            report = _report(directory / "report" / "report.json")
            if report is None:
                run.state = "failed"
                run.error = _last_line(directory / "run.log") or "it ended with no report"
            else:
                run.state = "ended"
                run.report = (directory / "report" / "index.html").exists()
                run.verdict, run.verdicts = _verdicts(report)
            self._known[run_id] = run
        return run if detail else _brief(run)

    def report_page(self, run_id: str) -> bytes:
        if run_id not in self.ids():
            raise Refused(404, f"no experiment run {run_id!r} here; see the Experiments tab")
        try:
            return (self.root / run_id / "report" / "index.html").read_bytes()
        except OSError:
            raise Refused(404, f"the run {run_id} has no report page (it did not end "
                               "well)") from None


def _brief(run: RunView) -> RunView:
    return msgspec.structs.replace(run, said=[], seconds=[])


def _progress(path: Path) -> tuple[list[str], dict[int, dict[str, Tally]]]:
    said: list[str] = []
    seconds: dict[int, dict[str, Tally]] = {}
    with suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry: Any = json.loads(line)
            except ValueError:
                continue  # a line being written
            if isinstance(entry, dict) and isinstance(entry.get("said"), str):
                said.append(entry["said"])
            elif isinstance(entry, dict) and isinstance(entry.get("second"), int) \
                    and isinstance(entry.get("strategies"), dict):
                seconds[entry["second"]] = {
                    str(name): Tally(int(pair[0]), int(pair[1]))
                    for name, pair in entry["strategies"].items()
                    if isinstance(pair, list) and len(pair) == 2}
    return said, seconds


def _report(path: Path) -> dict[str, Any] | None:
    with suppress(OSError, ValueError):
        report = json.loads(path.read_text())
        if isinstance(report, dict):
            return report
    return None


def _verdicts(report: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    """(the run's verdict, each strategy's): a reads run has one for both strategies."""
    if report.get("workload") == "purchases":
        outcomes = report.get("outcomes") or {}
        return report.get("verdict"), {str(k): str(v.get("verdict")) for k, v in
                                       outcomes.items() if isinstance(v, dict)}
    verdict = (report.get("outcome") or {}).get("verdict")
    return verdict, {}


def _last_line(path: Path) -> str | None:
    with suppress(OSError):
        lines = [line for line in path.read_text(errors="replace").splitlines() if line]
        return lines[-1][:300] if lines else None
    return None
