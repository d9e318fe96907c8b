"""`msshop wait` and `up --detach --wait`: the condition reached (one line on stdout), or
why not (one error line on stderr: what was still missing, and what to do); `--json`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from msshop.render.console import error, note

if TYPE_CHECKING:
    from rich.console import Console

    from msshop.contracts.waiting import WaitReport


def took(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def wait_report(out: Console, report: WaitReport) -> None:
    condition = report["condition"]
    names = ", ".join(s["name"] for s in report["services"])
    if report["outcome"] == "reached":
        if not names:  # down, with no service named: the whole sandbox
            note(out, f"{condition} after {took(report['waited_ms'])}: no sandbox runs in "
                      f"{report['sandbox']}")
            return
        head = report.get("bus_head")
        at = f" at bus position {head:,}" if head is not None else ""
        note(out, f"{condition} after {took(report['waited_ms'])}{at}: {names}")
        return
    missing = "; ".join(report["missing"])
    if report["outcome"] == "no-sandbox":
        error(missing)
    elif report["outcome"] == "service-down":
        gone = [s["name"] for s in report["services"] if s["status"] in ("crashed", "failed")]
        fix = f"start it with: msshop start {gone[0]}" if gone else "see: msshop status"
        error(f"{missing}, while waiting for {condition}; {fix}")
    else:
        stopped = [s["name"] for s in report["services"] if s["status"] == "stopped"]
        fix = (f"start it with: msshop start {stopped[0]}" if stopped and condition != "down"
               else "see: msshop status")
        error(f"not {condition} after {report['timeout_s']:g} s: {missing}; {fix}")
