"""Rung 6: SIGKILLed while applying a backlog, started again, caught up: nothing applied
twice, nothing skipped. The kill is the nemesis's crash-applying fault (chaos.py's
crash_while_applying); each crash is checked before the next, the first wrong answer
naming where the program was killed."""

from __future__ import annotations

from msshop.contracts.errors import MsshopError
from msshop.contracts.status import CrashedWhileApplying
from msshop.instruments import chaos
from msshop.instruments.challenges.arena import Arena, Judged
from msshop.instruments.challenges.findings import Finding
from msshop.instruments.challenges.replicas import (
    ABOUT_AN_ORDER,
    Explain,
    applied_head,
    exact_answers,
)
from msshop.runtime.orchestrator import lifecycle

CRASHES = 3  # at most; each lands mid-backlog with near certainty, a defect shows in one
BACKLOG = chaos.BACKLOG  # orders published for each crash: more than a page
CHECK = "nothing twice after a crash"
CAUSES = {
    "the user": "is UserSignedUp applied once, by the user's id?",
    "twice": "is your position stored in the same transaction as the rows it produced?",
    "missing": "is your position stored only once the rows are?",
    "should not be there": "are orders kept by their own user_id?",
    "title": "is ProductUpdated applied (the newest title wins)?",
}


def crash(arena: Arena) -> Judged:
    judged = Judged(checked=[
        f"up to {CRASHES} times: {BACKLOG:,} orders published, your service SIGKILLed "
        "while it applies them, started again, caught up; then every user's replicated "
        "answer against the monolith's"])
    if not applied_head(arena, judged, CHECK):
        return judged
    killed: list[CrashedWhileApplying] = []
    for attempt in range(1, CRASHES + 1):
        crashed = chaos.crash_while_applying(arena.settings, backlog=BACKLOG)
        killed.append(crashed)
        where = (f"killed at position {crashed['position']:,} while applying "
                 f"{crashed['start'] + 1:,} to {crashed['head']:,} (crash {attempt})")
        arena.say(f"SIGKILLed your service: {where}")
        try:
            lifecycle.start(arena.settings, "query")
        except MsshopError as exc:
            judged.findings.append(Finding(
                CHECK, "your service", "to start again after a SIGKILL",
                f"it did not ({exc.message.split('; see: ', 1)[0]})",
                "can it open its read model as the kill left it?", unanswered=True))
            break
        if not applied_head(arena, judged, CHECK):
            break
        exact_answers(arena, judged, CHECK, CAUSES, _killed_at(where, CAUSES))
        if judged.findings:
            break
    judged.figures["killed_at"] = [
        {k: c[k] for k in ("start", "position", "head", "while_applying")} for c in killed]
    if not judged.findings and not any(c["while_applying"] for c in killed):
        judged.unknown.append(f"none of {len(killed)} kills landed while your service "
                              "was applying (it applied each backlog between two looks)")
    return judged


def _killed_at(where: str, causes: dict[str, str]) -> Explain:
    """Explains an order twice or missing by where the program was killed."""
    def explain(actual: str) -> str | None:
        if ABOUT_AN_ORDER.match(actual) is None:
            return None
        question = causes["twice"] if " appears " in actual else causes["missing"]
        return f"{where}: {question}"
    return explain
