"""A repaired bus log, and the services' files checked whole."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from msshop.render.bus import replay_summary
from msshop.render.console import note

if TYPE_CHECKING:
    from msshop.contracts.repair import Checked, Repaired

SHOWN_RUNS = 8  # runs of lost positions named in the text (all of them: --json)


def repair_report(out: Console, report: Repaired) -> None:
    if report["bus"] == "nats":
        note(out, f"republished the outboxes' events into the stream, in position order: "
                  f"{report['events']:,} events, head {report['head']:,}, new log "
                  f"{report['log'][:8]}")
    else:
        if report["moved_aside"]:
            note(out, f"moved the damaged log aside (kept): {report['moved_aside']}")
        else:
            note(out, f"there was no {report['path']}: the log was lost with its file")
        note(out, f"rebuilt {report['path']} from the outboxes: {report['events']:,} events, "
                  f"head {report['head']:,}, new log {report['log'][:8]} (was "
                  f"{(report['old_log'] or 'unreadable')[:8]})")
    if report["renumbered"]:
        where = ("numbered by the server after a lost position" if report["bus"] == "nats"
                 else "after the head: a newer log had given their position again")
        note(out, f"{report['renumbered']:,} event(s) back at another position ({where}); "
                  "the others at their own")
    else:
        note(out, "every event back at its own position")
    for outbox in report["outboxes"]:
        if outbox["error"]:
            note(out, f"  {outbox['service']:<9} NOT RECOVERED: {outbox['error']}", "red")
            continue
        line = (f"  {outbox['service']:<9} {outbox['events']:>9,} back, "
                f"{outbox['pending']:,} never sent (its relay sends them)")
        if outbox["moved"]:
            line += f", {outbox['moved']:,} sent to an earlier log"
        note(out, line)
    if report["lost"]:
        runs = [f"{a}" if a == b else f"{a}-{b}" for a, b in report["lost"][:SHOWN_RUNS]]
        more = " …" if len(report["lost"]) > SHOWN_RUNS else ""
        unread = any(outbox["error"] for outbox in report["outboxes"])
        why = ("events appended directly, e.g. msshop poison"
               + (", or held by an outbox that could not be read" if unread else ""))
        note(out, f"not recovered: {report['lost_count']:,} position(s) no outbox holds "
                  f"({why}): {', '.join(runs)}{more}", "yellow")
    elif report["old_head"] is not None:
        note(out, f"nothing lost: every position of the old log, to {report['old_head']:,}, "
                  "is back")
    else:
        note(out, "no position missing up to the head (the old log's end is unknown: an "
                  "event appended directly after the last one sent is not seen)")
    if report["started"] and report["bus"] == "log":
        note(out, "started the bus")
    if report["replayed"] is not None:
        replay_summary(out, report["replayed"])
    if report["next"]:
        note(out, f"next: {report['next']}")


def files_checked(out: Console, checked: Checked) -> None:
    for file in checked["files"]:
        if not file["exists"]:
            note(out, f"{file['service']:<9} no file ({file['path']})")
        elif file["ok"]:
            note(out, f"{file['service']:<9} ok ({file['seconds']:.2f} s) {file['path']}")
        else:
            note(out, f"{file['service']:<9} DAMAGED {file['path']}: {file['problem']}; "
                      f"{file['way_out']}", "red")
