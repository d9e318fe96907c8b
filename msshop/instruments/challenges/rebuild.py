"""Rung 9: a read model rebuilt from nothing. The service stopped, a backlog published
(on the bus only: nothing applies it meanwhile), its data directory emptied (all but
service.json, which msshop writes), started again: the whole bus applied within the
stated time, every answer then exact.

The limits separate the two ways a learner applies a backlog: a page per request and a
transaction per page (msshop's own, both references, the broken program without a defect:
0.2-0.9 s for 20,000 events on two cores kept busy by two spinning processes, 20,000 to
90,000 events/s) from an event per request and a commit per event (the broken program's
one-at-a-time: 6-7.5 s on NATS, 13-16 s on the log bus, idle). WITHIN_S sits over 3 times
above the slowest of the first and 2 times below the fastest of the second."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from msshop.contracts.errors import MsshopError
from msshop.contracts.kinds import Kind
from msshop.contracts.limits import MAX_BATCH
from msshop.instruments import waiting
from msshop.instruments.challenges.arena import Arena, Judged
from msshop.instruments.challenges.findings import Finding
from msshop.instruments.challenges.replicas import CATCH_UP, applied_head, exact_answers
from msshop.instruments.checking import caught_up
from msshop.runtime.orchestrator import lifecycle
from msshop.runtime.orchestrator.executable import SERVICE_FILE

BACKLOG = 20_000  # orders published while the service is stopped, on top of the seed
WITHIN_S = 3.0  # the stated time for the whole bus, from the start
PUBLISHED_WITHIN_S = 60.0  # for the writers' outboxes to put the backlog on the bus
CHECK = "rebuilt from empty"
CAUSES = {
    "the user": "is UserSignedUp applied from position 1 on?",
    "twice": "is each page applied once, its position with its rows?",
    "missing": "does it start from position 0 when its read model is empty?",
    "title": "is ProductUpdated applied (the newest title wins)?",
}
NOT_THERE = "does it start from position 0 when its read model is empty, not at the head?"
SLOW = ("ask the bus for a page of events and apply each page in one transaction, not one "
        "event per request and a commit per event")


def rebuild(arena: Arena) -> Judged:
    judged = Judged(checked=[
        f"your service stopped, {BACKLOG:,} orders published, its data directory emptied "
        f"(all but {SERVICE_FILE}), started again: the bus's head applied within "
        f"{WITHIN_S:g} s, then every user's replicated answer against the monolith's"])
    client = arena.client
    # credit for the whole backlog: purchases take it (issue 26)
    user = {"id": client.add_batch("users", [{
        "email": f"rebuild-{time.time_ns()}@challenge.example", "name": "Rebuild",
        "credit": 100_000_000.0}])["ids"][0]}
    if not applied_head(arena, judged, CHECK):
        return judged
    lifecycle.command(arena.settings, "stop", "query")
    for first in range(0, BACKLOG, MAX_BATCH):  # as many requests as the services' limit asks
        client.add_batch("orders", [{"user_id": user["id"], "product_id": arena.cast.products[
            n % len(arena.cast.products)], "quantity": 1, "request_id": f"rebuild-{n}"}
            for n in range(first, min(first + MAX_BATCH, BACKLOG))])
    published = waiting.until(client, "caught-up", waiting.WRITERS, PUBLISHED_WITHIN_S,
                              poll=0.01, patient=False)
    if published["outcome"] != "reached":
        judged.unknown.append("the backlog did not reach the bus: "
                              + "; ".join(published["missing"]))
        return judged
    head = client.bus_head()
    emptied = _emptied(arena)
    arena.say(f"stopped your service, published {BACKLOG:,} orders, emptied its data "
              f"directory ({emptied} removed), starting it again")
    started = time.monotonic()
    try:
        lifecycle.start(arena.settings, "query")
    except MsshopError as exc:
        judged.findings.append(Finding(
            CHECK, "your service", "to start with an empty data directory",
            f"it did not ({exc.message.split('; see: ', 1)[0]})",
            "does it make its read model when there is none?", unanswered=True))
        return judged
    try:
        caught_up(client, CATCH_UP)
    except MsshopError as exc:
        judged.findings.append(Finding(
            CHECK, "the rebuild", f"{head:,} events applied within {WITHIN_S:g} s",
            exc.message.split(": ", 1)[-1].removesuffix("; see: msshop status"),
            SLOW if _position(arena) > 0 else NOT_THERE))
        return judged
    took = time.monotonic() - started
    judged.figures.update(events=head, rebuild_s=round(took, 2),
                          events_per_s=round(head / took) if took else None)
    judged.checked.append(f"{head:,} events applied in {took:.2f} s from the start"
                          + (f" ({head / took:,.0f} events/s)" if took else ""))
    if took > WITHIN_S:
        judged.findings.append(Finding(
            CHECK, "the rebuild", f"{head:,} events applied within {WITHIN_S:g} s",
            f"took {took:.1f} s ({head / took:,.0f} events/s)", SLOW))
    exact_answers(arena, judged, CHECK, CAUSES, unanswered=NOT_THERE)
    return judged


def _position(arena: Arena) -> int:
    """The read model's position as its /health says (0: none, or no answer)."""
    try:
        consumer = arena.client.health("query").get("consumer")
    except MsshopError:
        return 0
    return int(consumer["position"]) if consumer is not None else 0


def _emptied(arena: Arena) -> int:
    """The query service's data directory emptied but its service.json: how many went."""
    service = arena.state.services["query"]
    where = Path(service.db)
    directory = where if service.kind == Kind.EXECUTABLE else where.parent
    gone = 0
    for path in directory.iterdir():
        if path.name == SERVICE_FILE:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        gone += 1
    return gone
