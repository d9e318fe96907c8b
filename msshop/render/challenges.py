"""`msshop challenge`: the ladder (one line a rung, within 80 columns), one challenge's
task, a run's progress and its verdict with each finding on one line; `run all`, a line a
rung as each ends, then the failed rungs in full and the ladder's verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from msshop.render.console import note

if TYPE_CHECKING:
    from msshop.instruments.challenges.ladder import Ladder, Shown
    from msshop.instruments.challenges.run import ChallengeReport, LadderReport

STATUS_STYLES = {"passed": "green", "failed": "red", "not tried": "dim"}
VERDICT_STYLES = {"passed": "bold green", "failed": "bold red", "unknown": "bold yellow"}


def challenge_list(out: Console, ladder: Ladder) -> None:
    for row in ladder["challenges"]:
        line = Text(f"{row['rung']:>2}. ")
        line.append(f"{row['name']:<16} ", style="bold")
        line.append(f"{row['status']:<9} ", style=STATUS_STYLES[row["status"]])
        line.append(row["asks"])
        out.print(line, soft_wrap=True)
    if ladder["problem"]:
        note(out, ladder["problem"], "yellow")
    note(out, "Show one: msshop challenge show NAME; run it: msshop challenge run NAME "
         "--service 'CMD'", "dim")


def challenge_show(out: Console, shown: Shown) -> None:
    out.print(Text.assemble((f"{shown['rung']}. {shown['name']}", "bold"),
                            f" ({shown['status']}): ", shown["asks"]), soft_wrap=True)
    if not shown["gradeable"]:
        note(out, "Not gradeable yet: `run` says so and exits 2; the task stands.", "yellow")
    for label in ("task", "checks", "faults", "limits", "hint", "lesson"):
        note(out, f"{label}: {shown[label]}")


def challenge_progress(out: Console, message: str) -> None:
    note(out, f"challenge: {message}", "dim")


def challenge_result(out: Console, report: ChallengeReport) -> None:
    out.print(Text.assemble((f"{report['challenge']}", "bold"), ": ",
                            (report["verdict"], VERDICT_STYLES[report["verdict"]]),
                            f" (rung {report['rung']}, {report['bus']} bus, "
                            f"{report['took_s']:g} s)"), soft_wrap=True)
    note(out, f"service: {report['service']}", "dim")
    for finding in report["findings"]:
        note(out, f"  {finding['line']}")
        if finding["evidence"]:
            note(out, f"    {finding['evidence']}", "dim")
    if report["more_findings"]:
        note(out, f"  and {report['more_findings']} more")
    for line in report["unknown"]:
        note(out, f"  {line}", "yellow")
    for line in report["checked"]:
        note(out, f"checked: {line}", "dim")
    figures = report["figures"]
    if "yours" in figures:
        for whose, label in (("yours", "yours"), ("msshop", "msshop's own")):
            got = figures[whose]
            note(out, f"{label}: {got['reads']} reads, p50 {got['p50_ms']} ms, "
                 f"p99 {got['p99_ms']} ms, {got['refused']} refused")
    if report["traces"]:
        note(out, "--report DIR draws each failing answer's trace", "dim")
    if report["note"]:
        note(out, report["note"], "yellow")


def challenge_rung(out: Console, report: ChallengeReport) -> None:
    """One rung of `run all`, as it ends: its verdict and its first finding or reason."""
    out.print(Text.assemble(f"{report['rung']:>2}. ", (f"{report['challenge']:<16} ", "bold"),
                            (f"{report['verdict']:<8}", VERDICT_STYLES[report["verdict"]]),
                            f" {report['took_s']:g} s"), soft_wrap=True)
    first = [f["line"] for f in report["findings"][:1]] + report["unknown"][:1]
    for line in first[:1]:
        note(out, f"    {line}", "dim")


def challenge_ladder(out: Console, report: LadderReport) -> None:
    """The whole ladder's verdict, then each failed or unknown rung's findings in full."""
    for rung in report["challenges"]:
        if rung["verdict"] != "passed":
            out.print()
            challenge_result(out, rung)
    out.print()
    rungs = len(report["challenges"])
    words = [f"{len(report['passed'])} of {rungs} passed"]
    words += [f"failed: {', '.join(report['failed'])}"] if report["failed"] else []
    words += [f"unknown: {', '.join(report['unknown'])}"] if report["unknown"] else []
    out.print(Text.assemble(("ladder", "bold"), ": ",
                            (report["verdict"], VERDICT_STYLES[report["verdict"]]),
                            f" ({'; '.join(words)}; {report['bus']} bus, "
                            f"{report['took_s']:g} s)"), soft_wrap=True)
    note(out, f"service: {report['service']}", "dim")
