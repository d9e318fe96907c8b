"""Rungs 4 and 5: the bus's delivery faults on the learner's consumer. At-least-once:
events handed over again, some late, while purchases go on; every answer stays exact.
Order: one product's updates handed newest first; every title is the newest."""

from __future__ import annotations

import time

from msshop.contracts.status import Misdelivered, link_fault
from msshop.contracts.strategies import ReadStrategy
from msshop.instruments.challenges.arena import Arena, Judged
from msshop.instruments.challenges.findings import Finding
from msshop.instruments.challenges.replicas import (
    FAULT_WORDS,
    applied_head,
    bus_link,
    exact_answers,
    handed_again,
    held_off_bus,
    journal,
    until,
)
from msshop.instruments.client import Refused

DUPLICATE_RATE = 0.5  # of the events read, handed again in a later page, shuffled in
REDELIVER_RATE = 0.5  # of the events read, handed again at the start of the next page
ROUND_S = 0.2  # between two rounds of purchases (each read as a page of its own)
ROUNDS = 5  # at least, however squeezed: late redelivery needs later pages
RENAMED = 3  # products renamed under the reorder fault
VERSIONS = 3  # renames of each, in one page
CUT_OFF_S = 10.0  # for the partition that gathers the renames into one page
AT_LEAST_ONCE = "exact under duplicates"
ORDER = "newest version wins"
CAUSES = {
    "the user": "is UserSignedUp applied once, by the user's id?",
    "twice": "an event handed over again was applied again: what have you applied?",
    "missing": "was an event skipped as already seen, or never applied?",
    "should not be there": "are orders kept by their own user_id?",
    "title": "is ProductUpdated applied by its version, the newest winning?",
    "quantity": "is each quantity the order's own, from OrderPlaced?",
}


def at_least_once(arena: Arena) -> Judged:
    """Purchases in rounds while the bus hands events again and late; then every
    replicated answer must equal the monolith's."""
    judged = Judged(checked=[
        "every user's replicated answer against the monolith's join, after purchases "
        f"read with {DUPLICATE_RATE:.0%} of events handed again (shuffled into a later "
        f"page) and {REDELIVER_RATE:.0%} handed again late (the next page)"])
    began = time.time()
    if not applied_head(arena, judged, AT_LEAST_ONCE):
        return judged
    bus_link(arena, link_fault(duplicate_rate=DUPLICATE_RATE,
                               redeliver_rate=REDELIVER_RATE))
    try:
        buyers = [u for u, orders in arena.cast.users.items() if orders]
        rounds = max(ROUNDS, int(arena.seconds / ROUND_S))
        for round_ in range(rounds):
            arena.client.add_batch("orders", [
                {"user_id": user, "product_id": arena.cast.products[round_ % len(
                    arena.cast.products)], "quantity": 1 + round_ % 3,
                 "request_id": f"again-{began}-{round_}-{user}"} for user in buyers])
            time.sleep(ROUND_S)
        judged.figures["orders_placed"] = rounds * len(buyers)
        if not applied_head(arena, judged, AT_LEAST_ONCE):
            return judged
        entries = journal(arena)
    finally:
        bus_link(arena, None)
    judged.figures["handed_again"] = len(entries)
    exact_answers(arena, judged, AT_LEAST_ONCE, CAUSES, handed_again(entries, began))
    return judged


def newest_wins(arena: Arena) -> Judged:
    """Renames gathered into one page (the consumer cut off from the bus meanwhile), then
    handed newest first: every title must be the newest."""
    judged = Judged(checked=[
        f"{RENAMED} products renamed {VERSIONS} times each, the updates read in one page, "
        "each product's newest first; every title, then every user's replicated answer, "
        "against the monolith's"])
    if not applied_head(arena, judged, ORDER):
        return judged
    renamed = arena.cast.products[:RENAMED]
    try:
        if not held_off_bus(arena, CUT_OFF_S):
            judged.unknown.append(f"could not hold your consumer off the bus within "
                                  f"{CUT_OFF_S:g} s (its /health consumer.bus_error "
                                  "stayed empty), so the renames could not be gathered")
            return judged
        before = arena.client.bus_head()
        stamp = time.strftime("%H:%M:%S")
        for product in renamed:
            for version in range(2, 2 + VERSIONS):
                arena.client.request("products", "PATCH", f"/products/{product}",
                                     {"title": f"#{product} v{version} {stamp}"})
        arena.client.signup(f"last-{time.time_ns()}@challenge.example", "Last")  # not an update
        wanted = before + RENAMED * VERSIONS + 1
        if not until(lambda: arena.client.bus_head() >= wanted, CUT_OFF_S):
            judged.unknown.append("the renames did not reach the bus in time")
            return judged
        bus_link(arena, link_fault(reorder_rate=1.0))  # in place of the partition
        if not applied_head(arena, judged, ORDER):
            return judged
        entries = journal(arena)
    finally:
        bus_link(arena, None)
    judged.figures["reordered"] = len(entries)
    _titles(arena, judged, renamed, entries)
    if not judged.findings:
        exact_answers(arena, judged, ORDER, CAUSES)
    return judged


def _titles(arena: Arena, judged: Judged, renamed: list[int],
            entries: list[Misdelivered]) -> None:
    """Each renamed product's title in the answer of the user who bought them all."""
    buyer = max(arena.cast.users, key=lambda u: arena.cast.users[u])
    answer = arena.client.user_orders(buyer, ReadStrategy.REPLICATED, kept=False)
    if isinstance(answer, Refused):
        judged.findings.append(Finding(
            ORDER, f"user {buyer}", "an answer from your read model",
            f"no answer (HTTP {answer.status}: {answer.error.split('; ', 1)[0]})",
            unanswered=True))
        return
    shown = {line.get("product_id"): line.get("title") for line in answer.get("orders", [])
             if isinstance(line, dict)}
    for product in renamed:
        newest = arena.client.request("products", "GET", f"/products/{product}")["title"]
        if shown.get(product) == newest:
            continue
        handed = [e for e in entries if e["aggregate_type"] == "product"
                  and e["aggregate_id"] == product and e["fault"] == "reordered"]
        how = ("the bus handed its updates " + ", ".join(
            f"v{e['aggregate_version']} @{e['position']:,}" for e in handed)
            + f" ({FAULT_WORDS['reordered']})") if handed else \
            "the bus handed its updates newest first (reorder fault)"
        judged.findings.append(Finding(
            ORDER, f"product {product}", f"the newest, {newest!r}",
            f"title {shown.get(product)!r} shown (user {buyer}'s answer)",
            f"{how}: is ProductUpdated applied by its version?"))
