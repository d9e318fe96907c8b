"""`--json`: every command's answer as one JSON document, or a stream of JSON lines.

The documents' shapes are the contracts' TypedDicts (most in contracts/outcomes.py); here
the instruments' dataclasses become those documents, and the one way of printing them.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from msshop.contracts.events import Event
    from msshop.contracts.outcomes import (
        Comparison,
        EventOnTheBus,
        Followed,
        LogEntry,
        Poisoned,
        QueryAnswer,
        SandboxDown,
        SandboxUp,
        ServiceChanged,
        StatusUnknown,
        Verification,
    )
    from msshop.contracts.status import Health
    from msshop.contracts.waiting import WaitReport
    from msshop.instruments.asking import Asked
    from msshop.instruments.checking import Compared, Verified
    from msshop.instruments.journey import Journey
    from msshop.runtime.orchestrator.service_logs import LogLine
    from msshop.runtime.orchestrator.state import State


def document(value: Any, indent: int | None = 2) -> None:
    """One JSON document on stdout (`indent` None: on one line)."""
    print(json.dumps(value, indent=indent))


def json_line(value: Any) -> None:
    """One JSON document on one line, flushed: a stream a script reads as it comes."""
    sys.stdout.write(json.dumps(value, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def journey_document(journey: Journey) -> Followed:
    followed: Followed = {"trace_id": journey.trace_id, "applied": journey.applied,
                          "lag_ms": journey.lag_ms, "spans": journey.spans}
    if journey.unsaved:  # the warning the terminal shows, for a script too
        followed["unsaved"] = journey.unsaved
    return followed


def event_on_the_bus(position: int, event: Event) -> EventOnTheBus:
    return {"position": position, "id": event.id, "type": event.type, "source": event.source,
            "aggregate_type": event.aggregate_type, "aggregate_id": event.aggregate_id,
            "aggregate_version": event.aggregate_version, "occurred_at": event.occurred_at,
            "data": event.data, "trace_id": event.trace_id, "parent_span": event.parent_span}


def comparison(user_id: int, rows: list[Compared]) -> Comparison:
    return {"user_id": user_id, "strategies": [
        {"strategy": row.strategy, "error": row.error, "equal": row.equal,
         "differences": list(row.differences), "in_flight": list(row.in_flight),
         "orders": row.orders,
         "latency_ms": row.latency_ms, "sequential_hops": row.sequential_hops,
         "services": list(row.services), "databases": row.databases or {},
         "rows_read": row.rows_read, "freshness": row.freshness, "trace_id": row.trace_id}
        for row in rows]}


def verification(report: Verified) -> Verification:
    return {"ok": report.ok, "users": report.users, "orders": report.orders,
            "position": report.position, "head": report.head,
            "differences": {str(user): found for user, found in report.differences.items()},
            "invariant": list(report.invariant)}


def service_changed(service: str, action: Literal["stopped", "started", "restarted", "killed"],
                    status: str, ready_ms: float | None = None, health: Health | None = None,
                    exit: str | None = None) -> ServiceChanged:
    from msshop.render.sandbox import abilities

    return {"service": service, "action": action, "status": status, "ready_ms": ready_ms,
            "can": abilities(health) if health is not None else None, "exit": exit}


def sandbox_down(state: State) -> SandboxDown:
    return {"sandbox": state.sandbox, "supervisor_pid": state.supervisor_pid,
            "stopped": list(state.services)}


def sandbox_up(state: State, seconds: float, notes: list[str],
               waited: WaitReport | None = None) -> SandboxUp:
    up: SandboxUp = {
        "sandbox": state.sandbox, "mode": state.mode, "supervisor_pid": state.supervisor_pid,
        "up_ms": round(seconds * 1000, 1), "bus": state.bus.backend, "notes": notes,
        "services": [{"name": name, "pid": s.pid, "port": s.port, "url": s.url, "db": s.db,
                      "log": s.log} for name, s in state.services.items()]}
    if state.bus.backend == "nats":
        up["stream"] = state.bus.stream
    if waited is not None:
        up["waited"] = waited
    return up


def status_unknown(sandbox: str, error: str) -> StatusUnknown:
    return {"running": False, "sandbox": sandbox, "error": error}


def query_answer(asked: Asked) -> QueryAnswer:
    answer: QueryAnswer = {"answer": asked.answer, "latency_ms": asked.latency_ms,
                           "trace_id": asked.trace_id, "spans": asked.spans}
    if asked.unsaved:  # the warning the terminal shows, for a script too
        answer["unsaved"] = asked.unsaved
    return answer


def poison_event(position: int) -> Poisoned:
    return {"type": "Poison", "source": "users", "position": position}


def log_record(entry: LogLine) -> LogEntry:
    """A log line as `logs --json` prints it: its time in ISO 8601 with the offset."""
    import datetime as dt

    moment = (None if entry.at is None else dt.datetime.fromtimestamp(entry.at).astimezone()
              .isoformat(timespec="milliseconds"))
    return {"service": entry.service, "time": moment, "level": entry.level,
            "message": entry.message, "line": entry.line}
