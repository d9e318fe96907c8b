"""Rung 8: products down. Users sign up meanwhile (their events need no products); every
replicated answer must keep coming, equal to the monolith's, and its freshness honest:
never past the bus's head, never caught up while behind what it was seen to apply."""

from __future__ import annotations

import time

from msshop.contracts.errors import MsshopError
from msshop.contracts.strategies import ReadStrategy
from msshop.instruments import chaos, monolith
from msshop.instruments.asking import databases
from msshop.instruments.challenges.arena import Arena, Judged
from msshop.instruments.challenges.composition import compared
from msshop.instruments.challenges.findings import Finding
from msshop.instruments.challenges.replicas import CATCH_UP, applied_head, until
from msshop.instruments.client import Refused
from msshop.runtime.orchestrator import lifecycle

DOWN = "products"
SIGNUPS = 3  # users signed up while products is down
CHECK = "answers through an outage"
CAUSES = {
    "the user": "is UserSignedUp applied while products is down?",
    "missing": "is every OrderPlaced applied?",
    "title": "is each title from your read model, not asked of products?",
}


def outage(arena: Arena) -> Judged:
    judged = Judged(checked=[
        f"{DOWN} stopped; {SIGNUPS} users signed up meanwhile; every user's replicated "
        "answer, again and again while it is down: answered, equal to the monolith's, "
        "its freshness at most the bus's head and caught up only when it is"])
    if not applied_head(arena, judged, CHECK):
        return judged
    lifecycle.command(arena.settings, "stop", DOWN)
    arena.say(f"stopped {DOWN}; asking every user while it is down")
    try:
        for n in range(SIGNUPS):
            arena.client.signup(f"outage-{n}-{time.time_ns()}@challenge.example",
                                f"Outage {n}")
        # msshop's wait for caught-up ends at once with a service down: the signups on
        # the bus (users' outbox empty: its relay publishes after the commit), then the
        # bus's head is what the read model must reach
        if not until(lambda: arena.client.health("users")["outbox"]["pending"] == 0,
                     CATCH_UP):
            judged.unknown.append(f"the signups did not reach the bus within {CATCH_UP:g} s")
            return judged
        applied = arena.client.bus_head()
        if not until(lambda: chaos.consumer_position(arena.client, "query") >= applied,
                     CATCH_UP):
            judged.findings.append(Finding(
                CHECK, "the read model", f"position {applied:,} (the signups) applied "
                f"within {CATCH_UP:g} s", "not applied",
                f"is your consumer waiting for {DOWN}? it needs only the bus"))
            return judged
        users = list(monolith.all_users(databases(arena.state)))
        deadline, asked = time.monotonic() + arena.seconds, 0
        while not judged.findings:
            for user in users:
                _judged_answer(arena, judged, user, applied)
                asked += 1
            if time.monotonic() >= deadline or judged.given_up():
                break
        judged.figures["answers_while_down"] = asked
    finally:
        try:
            lifecycle.start(arena.settings, DOWN)
        except MsshopError as exc:  # the sandbox goes anyway: the verdict stands
            judged.checked.append(f"{DOWN} did not start again: {exc.message}")
    return judged


def _judged_answer(arena: Arena, judged: Judged, user: int, applied: int) -> None:
    subject = f"user {user} ({DOWN} down)"
    answer = arena.client.user_orders(user, ReadStrategy.REPLICATED, kept=False)
    if isinstance(answer, Refused):
        judged.findings.append(Finding(
            CHECK, subject, "an answer from your read model",
            f"HTTP {answer.status}: {answer.error.split('; ', 1)[0]}",
            f"a replicated answer needs nothing of {DOWN}: does it call it, or wait for "
            "it?", unanswered=True))
        return
    truth, _ = monolith.user_orders(databases(arena.state), user)
    found = compared(truth, answer, CAUSES)
    if found:
        expected, actual, cause = found[0]
        judged.findings.append(Finding(CHECK, subject, expected, actual, cause))
        return
    freshness = answer.get("freshness")
    position = freshness.get("position") if isinstance(freshness, dict) else None
    if not isinstance(freshness, dict) or not isinstance(position, int):
        judged.findings.append(Finding(
            CHECK, subject, "freshness with the position applied",
            "no freshness.position in the answer",
            "a replicated answer says how current it is (docs/protocol.md)"))
        return
    head = arena.client.bus_head()
    if position > head:
        judged.findings.append(Finding(
            CHECK, subject, f"a position at most the bus's head, {head:,}",
            f"freshness.position {position:,}",
            "is the position the one you applied, not one you expect?"))
    elif freshness.get("caught_up") is True and position < applied:
        judged.findings.append(Finding(
            CHECK, subject, f"caught_up false, or position {applied:,} (applied before "
            "it was asked)", f"caught_up true at position {position:,}",
            "is caught_up computed from the position you applied and the head you saw?"))
