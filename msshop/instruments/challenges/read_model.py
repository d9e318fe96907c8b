"""Rung 3: the answer from a read model of the learner's own, fed by the bus: right once
caught up, and made with no call to the services that own the data."""

from __future__ import annotations

import time

from msshop.contracts.errors import MsshopError
from msshop.contracts.status import link_fault
from msshop.contracts.strategies import ReadStrategy
from msshop.instruments import chaos, monolith
from msshop.instruments.asking import databases
from msshop.instruments.challenges.arena import Arena, Judged
from msshop.instruments.challenges.composition import (
    CALLEES,
    compared,
    one_per_user,
    requests_under,
)
from msshop.instruments.challenges.findings import Finding, refusal
from msshop.instruments.challenges.replicas import applied_head

RENAMED = 3  # products renamed after the seed (ProductUpdated must be applied too)
CHECK = "from the read model"
# the likely cause of a difference, by the field that differs
CAUSES = {
    "the user": "is UserSignedUp applied?",
    "missing": "is every OrderPlaced applied, from position 1 on?",
    "should not be there": "are orders kept by their own user_id?",
    "title": "is ProductUpdated applied (the newest title wins)?",
    "unit_price": "unit_price is the order's own, from OrderPlaced",
    "quantity": "is each quantity the order's own, from OrderPlaced?",
}


def from_read_model(arena: Arena) -> Judged:
    judged = Judged(checked=[
        f"{len(arena.cast.users)} users' replicated answers against the monolith's "
        f"join, once caught up, with your calls to {', '.join(CALLEES)} cut; no request "
        "to them under each answer's trace"])
    stamp = time.strftime("%H:%M:%S")
    for product in arena.cast.products[:RENAMED]:
        arena.client.request("products", "PATCH", f"/products/{product}",
                             {"title": f"Renamed at {stamp} #{product}"})
    started = time.monotonic()
    if not applied_head(arena, judged, CHECK):
        return judged
    judged.figures["caught_up_s"] = round(time.monotonic() - started, 3)
    faulty = link_fault(error_rate=1.0)
    try:
        for callee in CALLEES:
            chaos.set_link(arena.state, "query", callee, faulty)
        for user in arena.cast.users:
            if judged.given_up():
                break
            _check_user(arena, user, judged)
    finally:
        for callee in CALLEES:
            chaos.set_link(arena.state, "query", callee, None)
    return judged


def _check_user(arena: Arena, user: int, judged: Judged) -> None:
    try:
        asked = arena.questioner.ask(user, ReadStrategy.REPLICATED)
    except MsshopError as exc:
        said, trace_id = refusal(exc.message)
        judged.findings.append(Finding(
            CHECK, f"user {user}", "an answer from your read model", f"no answer ({said})",
            "your calls to the other services were cut: does it call them at query time?",
            trace_id=trace_id, unanswered=True))
        return
    truth, _ = monolith.user_orders(databases(arena.state), user)
    judged.found(one_per_user(CHECK, user, compared(truth, asked.answer, CAUSES),
                              asked.trace_id), asked.spans)
    received = requests_under(asked.spans)
    if any(received.values()):
        called = ", ".join(f"{c} {n}" for c, n in received.items() if n)
        judged.found([Finding(
            CHECK, f"user {user}", "no request to another service at query time",
            f"requests under the answer's trace: {called}",
            "a replicated answer reads your read model only", trace_id=asked.trace_id)],
            asked.spans)
