"""What the later rungs share: waiting for the learner's read model to apply the bus's
head, every user's replicated answer checked against the monolith's, and the bus's
delivery journal as evidence (what it handed the learner's consumer out of the ordinary)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from msshop.contracts.errors import MsshopError
from msshop.contracts.kinds import Kind
from msshop.contracts.status import LinkFault, Misdelivered, link_fault
from msshop.contracts.strategies import ReadStrategy
from msshop.instruments import chaos, monolith
from msshop.instruments.asking import databases
from msshop.instruments.challenges.arena import Arena, Judged
from msshop.instruments.challenges.composition import compared
from msshop.instruments.challenges.findings import Finding
from msshop.instruments.checking import caught_up
from msshop.instruments.client import Refused

CATCH_UP = 30.0  # seconds the read model has to apply the bus's head
ABOUT_AN_ORDER = re.compile(r"^order (\d+) (?:appears|is missing)")
#: the journal's faults, as a learner reads them
FAULT_WORDS = {"duplicate": "duplicates fault", "redelivered": "late redelivery",
               "reordered": "reorder fault"}
#: explains a difference (the words of checking.differences) with the evidence, or None
Explain = Callable[[str], str | None]


def applied_head(arena: Arena, judged: Judged, check: str) -> bool:
    """Whether the read model applied the bus's head in time (a finding if not)."""
    try:
        caught_up(arena.client, CATCH_UP)
    except MsshopError as exc:
        judged.findings.append(Finding(
            check, "the read model", f"the bus's head applied within {CATCH_UP:g} s",
            exc.message.split(": ", 1)[-1].removesuffix("; see: msshop status"),
            "does GET /health report consumer.position as you apply events "
            "(docs/protocol.md)?"))
        return False
    return True


def exact_answers(arena: Arena, judged: Judged, check: str, causes: dict[str, str],
                  explain: Explain | None = None,
                  unanswered: str = "is the user in your read model (UserSignedUp applied)?"
                  ) -> None:
    """Every user's replicated answer (the monolith's users, the trial's own included)
    against the monolith's: a finding per user, its likely cause explained if it can be
    (`unanswered`: why a user would get no answer, in the trial's words)."""
    for user in monolith.all_users(databases(arena.state)):
        if judged.given_up():
            return
        answer = arena.client.user_orders(user, ReadStrategy.REPLICATED, kept=False)
        if isinstance(answer, Refused):
            judged.findings.append(Finding(
                check, f"user {user}", "an answer from your read model",
                f"no answer (HTTP {answer.status}: {answer.error.split('; ', 1)[0]})",
                unanswered, unanswered=True))
            continue
        truth, _ = monolith.user_orders(databases(arena.state), user)
        found = compared(truth, answer, causes)
        if not found:
            continue
        (expected, actual, cause), rest = found[0], found[1:]
        cause = (explain(actual) if explain else None) or cause
        if " appears " in actual:  # checking.differences' words for an order twice
            expected = "once"
        also = "also: " + "; ".join(said for _, said, _ in rest[:2]) if rest else None
        judged.findings.append(Finding(check, f"user {user}", expected, actual, cause, also))


def journal(arena: Arena) -> list[Misdelivered]:
    """What the bus handed the learner's program out of the ordinary (the log bus's
    journal, or on nats its door's); none for msshop's own query service (its faults are
    in its own process)."""
    if arena.state.services["query"].kind != Kind.EXECUTABLE:
        return []
    try:
        return arena.client.deliveries("query")["entries"]
    except MsshopError:
        return []


def handed_again(entries: list[Misdelivered], began: float) -> Explain:
    """Explains an order twice or missing by the journal's OrderPlaced handed again."""
    def explain(actual: str) -> str | None:
        about = ABOUT_AN_ORDER.match(actual)
        if about is None:
            return None
        twice = "appears" in actual
        question = "was it applied twice?" if twice else "was it skipped as already seen?"
        again = next((e for e in entries if e["type"] == "OrderPlaced"
                      and e["aggregate_id"] == int(about.group(1))
                      and e["fault"] != "reordered"), None)
        if again is None:
            return f"the bus handed events over again (duplicates, late): {question}"
        return (f"the bus delivered OrderPlaced @{again['position']:,} again at "
                f"{again['at'] - began:.1f} s ({FAULT_WORDS[again['fault']]}); {question}")
    return explain


def bus_link(arena: Arena, fault: LinkFault | None) -> None:
    """The faults on the learner's reads of the bus (None: none)."""
    chaos.set_link(arena.state, "query", "bus", fault)


def until(condition: Callable[[], object], seconds: float) -> bool:
    """Whether `condition` held within `seconds` (looked at every 20 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def held_off_bus(arena: Arena, seconds: float) -> bool:
    """The consumer's reads of the bus refused, once that holds within `seconds`: its
    long-poll, open since before, answered (by a write) and the next one refused. Lifted
    by bus_link(arena, None) or another fault."""
    bus_link(arena, link_fault(error_rate=1.0))
    arena.client.signup(f"wake-{time.time_ns()}@challenge.example", "Wake")
    return until(lambda: _bus_error(arena), seconds)


def _bus_error(arena: Arena) -> str | None:
    consumer = arena.client.health("query").get("consumer")
    return consumer["bus_error"] if consumer is not None else None
