"""`msshop challenge run NAME`: the challenge in a sandbox of its own, with the learner's
program as the query service (msshop's own without one), seeded, its trial run, and a
verdict: passed, failed (with findings a learner can act on), or unknown (why it could
not tell). The learner's progress in the current directory is updated. `run all`: every
rung in the ladder's order, each so, and one verdict for the whole ladder."""

from __future__ import annotations

import dataclasses
import os
import platform
import shlex
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from msshop.contracts.config import Settings
from msshop.contracts.errors import MsshopError, UsageError
from msshop.contracts.spans import Span
from msshop.instruments.asking import Questioner
from msshop.instruments.challenges import composition, progress
from msshop.instruments.challenges.arena import Arena, Judged, Say
from msshop.instruments.challenges.findings import FindingRecord, Verdict, first_few
from msshop.instruments.challenges.ladder import LADDER, Challenge, challenge
from msshop.instruments.challenges.sandbox import own_sandbox, seed

ALL = "all"  # `run all`: the whole ladder
FULL_SECONDS = 10.0  # a timed part of a trial at full length (the whole run: under a minute)
MSSHOP_OWN = "msshop's own query service"


class ChallengeReport(TypedDict):
    """What `challenge run` reports: drawn, `--json`, and report.json of `--report`."""

    challenge: str
    rung: int
    asks: str
    service: str  # the learner's command, or MSSHOP_OWN
    bus: str
    started_at: str  # ISO 8601, UTC
    machine: str
    seconds: float  # the timed parts' length
    took_s: float  # the whole run, sandbox included
    verdict: Verdict
    checked: list[str]  # what was checked, a line each
    findings: list[FindingRecord]  # the first few
    more_findings: int  # how many more there were
    unknown: list[str]  # why it could not tell, a line each
    figures: dict[str, Any]
    traces: dict[str, list[Span]]  # the shown findings' traces, by id (--report draws them)
    note: str | None  # about the progress file, if it could not be read or kept


class LadderReport(TypedDict):
    """What `challenge run all` reports: each rung's report, in the ladder's order, and
    the whole ladder's verdict (failed if any rung failed, else unknown if any could not
    tell, else passed)."""

    service: str
    bus: str
    took_s: float
    verdict: Verdict
    passed: list[str]
    failed: list[str]
    unknown: list[str]
    challenges: list[ChallengeReport]


def command_of(service: str | None) -> tuple[str, ...] | None:
    """`--service 'CMD'` split as a shell would; one line if it names no command."""
    if service is None:
        return None
    try:
        words = tuple(shlex.split(service))
    except ValueError as exc:
        raise UsageError(f"--service {service!r}: {exc}; quote it as a shell would") from None
    if not words:
        raise UsageError("--service names no command; e.g. --service "
                         "'python3 d/service.py'")
    return words


def run(settings: Settings, name: str, service: str | None = None,
        seconds: float | None = None, say: Say | None = None,
        directory: Path | None = None) -> ChallengeReport:
    """Run challenge `name`; `directory`: where the learner's progress is kept (the current
    one by default)."""
    found = challenge(name)
    command = command_of(service)
    if seconds is not None and not 0 < seconds <= 600:
        raise UsageError(f"--seconds {seconds:g}: give a length from 0 to 600 seconds")
    tell: Say = say or (lambda message: None)
    config = settings if command is None else dataclasses.replace(
        settings, commands={**settings.commands, "query": command})
    length = FULL_SECONDS if seconds is None else seconds
    began, started_at = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
    if found.trial is None:
        judged = Judged(unknown=[f"{found.name} is not gradeable yet: its trial lands with "
                                 "the bus faults it needs"])
    else:
        judged = _trial(found, config, length, tell)
    note = _recorded(found.name, judged.verdict, directory)
    shown, more = first_few(judged.findings)
    return {"challenge": found.name, "rung": found.rung, "asks": found.asks,
            "service": service if service is not None else MSSHOP_OWN,
            "bus": settings.bus_backend, "started_at": started_at,
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
            "seconds": length, "took_s": round(time.monotonic() - began, 1),
            "verdict": judged.verdict, "checked": judged.checked,
            "findings": [f.record() for f in shown], "more_findings": more,
            "unknown": judged.unknown, "figures": judged.figures,
            "traces": {f.trace_id: judged.traces[f.trace_id] for f in shown
                       if f.trace_id is not None and f.trace_id in judged.traces},
            "note": note}


def run_ladder(settings: Settings, service: str | None = None,
               seconds: float | None = None, say: Say | None = None,
               directory: Path | None = None,
               ran: Callable[[ChallengeReport], None] | None = None) -> LadderReport:
    """Every rung, one after another, each as `run` runs it (a sandbox of its own, the
    progress kept); `ran` is told each rung's report as it ends. A program that cannot
    start is said at the first rung, as `run` says it."""
    began = time.monotonic()
    reports: list[ChallengeReport] = []
    tell: Say = say or (lambda message: None)
    for found in LADDER:  # each rung's own steps are not told: its result line says it
        tell(f"running rung {found.rung} of {len(LADDER)}, {found.name}")
        report = run(settings, found.name, service, seconds, None, directory)
        reports.append(report)
        if ran is not None:
            ran(report)
    named = {verdict: [r["challenge"] for r in reports if r["verdict"] == verdict]
             for verdict in ("passed", "failed", "unknown")}
    verdict: Verdict = "failed" if named["failed"] else "unknown" if named["unknown"] \
        else "passed"
    return {"service": reports[0]["service"], "bus": settings.bus_backend,
            "took_s": round(time.monotonic() - began, 1), "verdict": verdict,
            "passed": named["passed"], "failed": named["failed"],
            "unknown": named["unknown"], "challenges": reports}


def _trial(found: Challenge, config: Settings, seconds: float, tell: Say) -> Judged:
    assert found.trial is not None
    whose = "your query service" if "query" in config.commands else MSSHOP_OWN
    tell(f"starting a sandbox of its own with {whose}, on the {config.bus_backend} bus")
    with own_sandbox(config, found.name) as (sandbox, state):
        questioner = Questioner(state, timeout=composition.TIMEOUT)
        try:
            tell("seeding users, products and orders")
            try:
                cast = seed(questioner.client)
            except MsshopError as exc:
                return Judged(unknown=[f"could not seed the sandbox: {exc.message}"])
            tell(f"rung {found.rung}, {found.name}: {found.asks}")
            arena = Arena(sandbox, state, questioner, cast, seconds, tell)
            try:
                return found.trial(arena)
            except MsshopError as exc:
                return Judged(unknown=[f"the trial could not finish: {exc.message}"])
        finally:
            questioner.client.close()


def _recorded(name: str, verdict: Verdict, directory: Path | None) -> str | None:
    """The progress kept; a line to show if the file was damaged or cannot be written."""
    before = progress.read(directory)
    try:
        progress.record(name, verdict, directory)
    except UsageError as exc:
        return exc.message
    if before.problem is not None and verdict != "unknown":
        return before.problem.split(";")[0] + "; it was written afresh"
    return before.problem
