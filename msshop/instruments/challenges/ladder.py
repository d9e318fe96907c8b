"""The ladder: each challenge declared once, in the order the ideas build on each other.
`list`, `show`, `run`, the docs' table and the tests all read it from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from msshop.contracts.errors import UsageError
from msshop.instruments.challenges import (
    composition,
    crash,
    delivery,
    fast,
    outage,
    read_model,
    read_your_writes,
    rebuild,
    replicas,
)
from msshop.instruments.challenges.arena import Trial
from msshop.instruments.challenges.progress import Progress, Status


@dataclass(frozen=True)
class Challenge:
    rung: int
    name: str
    asks: str  # what it asks, as `list` shows it: at most ASKS_WIDTH characters
    task: str  # what to build
    checks: str  # what the checker does
    faults: str  # which faults it runs under ("none" for the first rungs)
    limits: str  # the numbers the answer is held to
    hint: str  # the idea, not the code
    lesson: str  # the part of the lesson it comes from
    trial: Trial | None = None  # None: declared, not gradeable yet


LADDER: tuple[Challenge, ...] = (
    Challenge(
        1, "direct-call", "answer by calling the owners; equal the monolith",
        "Serve GET /user-orders/{id}?strategy=direct-call by asking users, orders and "
        "products over HTTP at query time, and answer in the shape docs/protocol.md gives.",
        "Seeds users with 0 to 40 orders each, asks your service for every user's "
        "direct-call answer and compares each with the monolith's join (the one SQL "
        "query over every service's database): the user, every order, title, quantity "
        "and price.",
        "none", f"every user; {composition.TIMEOUT:g} s per answer",
        "The monolith answers with one join. Without it, the join happens in your code: "
        "who owns the user, who owns the orders, who owns the titles?",
        "docs/protocol.md, GET /user-orders/{user_id}", composition.equal_to_monolith),
    Challenge(
        2, "batched", "at most two stages, whatever the order count",
        "Keep the direct-call answer, but make the number of calls independent of how "
        "many orders a user has: users and orders at once, then products for all titles "
        "in one call.",
        "Asks each user's direct-call answer and gathers the trace (forward traceparent: "
        "docs/protocol.md): counts the requests users, orders and products received under "
        "it, and the sequential network stages.",
        "none", f"at most {composition.MAX_STAGES} stages; at most "
        f"{composition.MAX_PER_CALLEE} requests to each service per answer",
        "N+1: one call per product costs a round trip each. What call takes many ids?",
        "docs/protocol.md, Tracing: forward traceparent", composition.batched),
    Challenge(
        3, "read-model", "answer from your read model, calling nobody",
        "Serve strategy=replicated from a read model of your own, built from the events "
        "on the bus (UserSignedUp, ProductCreated, ProductUpdated, OrderPlaced).",
        "Seeds, renames products and places orders, waits until your consumer has "
        "applied the bus's head, then cuts your links to users, orders and products and "
        "asks every user's replicated answer: each must equal the monolith's, and no "
        "request may reach those services under its trace.",
        "your calls to users, orders and products fail while it asks",
        f"every user; caught up within {replicas.CATCH_UP:g} s",
        "Keep your own copy of what you need, fed by the events, kept where you answer.",
        "docs/protocol.md, Reading the bus", read_model.from_read_model),
    Challenge(
        4, "at-least-once", "exact answers when events come again, late",
        "Make your consumer idempotent: an event delivered twice is applied once.",
        "Runs purchases while the bus hands your consumer events again, some late; then "
        "every user's replicated answer must equal the monolith's.",
        "duplicates and late redelivery", "no order twice, none missing",
        "An event has an id and a position. What have you already applied?",
        "docs/protocol.md, Applying each event once", delivery.at_least_once),
    Challenge(
        5, "order", "the newest product version wins, in any order",
        "Apply ProductUpdated by its version, not by when it arrived.",
        f"Renames {delivery.RENAMED} products {delivery.VERSIONS} times each while your "
        "consumer is held off the bus, so that the updates come in one page, then hands "
        "each product's updates newest first; every title must be the newest.",
        "your consumer held off the bus; one product's updates handed newest first",
        "every title the newest",
        "Each event carries its aggregate's version. Which one is newer?",
        "docs/protocol.md, The events", delivery.newest_wins),
    Challenge(
        6, "crash", "SIGKILL while applying: nothing twice, none lost",
        "Store your position in the same transaction as the rows it produced.",
        f"Publishes {crash.BACKLOG:,} orders and kills your service with SIGKILL while it "
        "applies them, starts it again, and checks every answer once it has caught up; "
        f"up to {crash.CRASHES} times.",
        "SIGKILL while applying", "no order twice, none missing",
        "If the process dies between writing the rows and the position, what is true?",
        "docs/protocol.md, Applying each event once", crash.crash),
    Challenge(
        7, "read-your-writes", "honour after=POSITION within the stated wait",
        "Serve replicated?after=POSITION&wait_ms=W: answer once you have applied "
        "POSITION, or say you could not within W.",
        "Places orders and asks at once with after= each one's position: the order must "
        "be there. Then holds your consumer off the bus and asks again: the order, or "
        "an honest 503 once the wait is over; back on the bus, the order within the wait.",
        "your consumer cut off from the bus for a while",
        f"within wait_ms, {read_your_writes.WAIT_MS / 1000:g} s",
        "You know your position. Wait for it, but not forever.",
        "docs/protocol.md, GET /user-orders/{user_id}", read_your_writes.read_your_writes),
    Challenge(
        8, "outage", "products down: answers go on, freshness honest",
        "Answer replicated reads from your read model while a service is down, saying "
        "how fresh the answer is.",
        "Stops products, signs users up meanwhile, and asks every user again and again "
        "while it is down: answers must keep coming, equal to the monolith's, with "
        "freshness that is honest (never past the bus's head, caught up only when it is).",
        "products down", "every read answered; freshness honest",
        "Your read model does not need products to be up. Does your code?",
        "README.md, Trade-offs, measured", outage.outage),
    Challenge(
        9, "rebuild", "from empty, catch up N events in a stated time",
        "Rebuild your read model from position 0 quickly.",
        f"Stops your service, publishes {rebuild.BACKLOG:,} orders, empties its data "
        "directory (all but service.json), starts it again and times its catch-up over "
        "the whole bus; then checks every answer.",
        "none", f"the whole bus applied within {rebuild.WITHIN_S:g} s of the start",
        "Apply in batches, one transaction per batch, not one per event.",
        "docs/protocol.md, Reading the bus", rebuild.rebuild),
    Challenge(
        10, "fast", "p50 and p99 limits, beside msshop's own",
        "Answer replicated reads fast at a steady rate.",
        f"Reads replicated answers at {fast.RATE:g} reads/s, each sent on time whether "
        "or not the last has answered, and measures p50 and p99; then does the same to "
        "msshop's own query service on the same machine, in the same run: both shown.",
        "none", f"p50 ≤ {fast.P50_MS:g} ms, p99 ≤ {fast.P99_MS:g} ms at {fast.RATE:g} "
        "reads/s",
        "An index on what you look up, one connection kept open, no work per request "
        "that could be done once.",
        "docs/benchmarks.md", fast.fast),
)
BY_NAME = {challenge.name: challenge for challenge in LADDER}


def challenge(name: str) -> Challenge:
    """The challenge called `name`; one line listing the names if there is none."""
    found = BY_NAME.get(name)
    if found is None:
        raise UsageError(f"no challenge named {name!r}; choose one of: "
                         + ", ".join(BY_NAME))
    return found


ASKS_WIDTH = 49  # `list` is one line each in 80 columns: rung, name, status, then this


class Listed(TypedDict):
    rung: int
    name: str
    asks: str
    status: Status
    gradeable: bool  # False: declared, its trial not there yet


class Ladder(TypedDict):
    """`challenge list`: the ladder with the learner's status on each rung."""

    challenges: list[Listed]
    progress_file: str
    problem: str | None  # the progress file could not be read (one line)


class Shown(Listed):
    """`challenge show NAME`."""

    task: str
    checks: str
    faults: str
    limits: str
    hint: str
    lesson: str


def ladder(progress: Progress, progress_file: str) -> Ladder:
    return {"challenges": [_listed(c, progress) for c in LADDER],
            "progress_file": progress_file, "problem": progress.problem}


def shown(name: str, progress: Progress) -> Shown:
    found = challenge(name)
    return {**_listed(found, progress), "task": found.task, "checks": found.checks,
            "faults": found.faults, "limits": found.limits, "hint": found.hint,
            "lesson": found.lesson}


def _listed(found: Challenge, progress: Progress) -> Listed:
    return {"rung": found.rung, "name": found.name, "asks": found.asks,
            "status": progress.of(found.name), "gradeable": found.trial is not None}
