"""Rung 9: a read model rebuilt from nothing. A backlog published, the service stopped,
its data directory emptied (all but service.json, which msshop writes), started again:
the whole bus applied within the stated time, every answer then exact."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from msshop.contracts.errors import MsshopError
from msshop.contracts.kinds import Kind
from msshop.instruments.challenges.arena import Arena, Judged
from msshop.instruments.challenges.findings import Finding
from msshop.instruments.challenges.replicas import CATCH_UP, applied_head, exact_answers
from msshop.instruments.checking import caught_up
from msshop.runtime.orchestrator import lifecycle
from msshop.runtime.orchestrator.executable import SERVICE_FILE

BACKLOG = 5000  # orders published before the rebuild, so the bus holds more than the seed
WITHIN_S = 10.0  # the stated time for the whole bus, from the start
CHECK = "rebuilt from empty"
CAUSES = {
    "the user": "is UserSignedUp applied from position 1 on?",
    "twice": "is each page applied once, its position with its rows?",
    "missing": "does it start from position 0 when its read model is empty?",
    "title": "is ProductUpdated applied (the newest title wins)?",
}


def rebuild(arena: Arena) -> Judged:
    judged = Judged(checked=[
        f"{BACKLOG:,} orders published, your service stopped, its data directory emptied "
        f"(all but {SERVICE_FILE}), started again: the bus's head applied within "
        f"{WITHIN_S:g} s, then every user's replicated answer against the monolith's"])
    client = arena.client
    # credit for the whole backlog: purchases take it (issue 26)
    user = {"id": client.add_batch("users", [{
        "email": f"rebuild-{time.time_ns()}@challenge.example", "name": "Rebuild",
        "credit": 100_000_000.0}])["ids"][0]}
    client.add_batch("orders", [{"user_id": user["id"], "product_id": arena.cast.products[
        n % len(arena.cast.products)], "quantity": 1, "request_id": f"rebuild-{n}"}
        for n in range(BACKLOG)])
    if not applied_head(arena, judged, CHECK):
        return judged
    head = client.bus_head()
    lifecycle.command(arena.settings, "stop", "query")
    emptied = _emptied(arena)
    arena.say(f"stopped your service, emptied its data directory ({emptied} removed), "
              "starting it again")
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
            "does it read the bus from position 0 when its read model is empty?"))
        return judged
    took = time.monotonic() - started
    judged.figures.update(events=head, rebuild_s=round(took, 2),
                          events_per_s=round(head / took) if took else None)
    judged.checked.append(f"{head:,} events applied in {took:.2f} s from the start"
                          + (f" ({head / took:,.0f} events/s)" if took else ""))
    if took > WITHIN_S:
        judged.findings.append(Finding(
            CHECK, "the rebuild", f"{head:,} events applied within {WITHIN_S:g} s",
            f"took {took:.1f} s ({head / took:,.0f} events/s)",
            "apply each page in one transaction, not one per event"))
    exact_answers(arena, judged, CHECK, CAUSES)
    return judged


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
