"""What `msshop experiment` reports: the figures render draws, the HTML page charts and
`experiment --json` writes. Times are seconds from the start of the load."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

from msshop.contracts.strategies import SERVED, ReadStrategy

STRATEGIES: tuple[ReadStrategy, ...] = SERVED  # read side by side under load and faults
Verdict = Literal["valid", "invalid", "unknown"]
EXIT_CODES: dict[Verdict, int] = {"valid": 0, "invalid": 1, "unknown": 2}


class Window(TypedDict):
    """One fault of the schedule, as it was really applied (start/end: when it took hold
    and when it was healed, which may be later than planned: a restart takes time)."""

    kind: str  # kill, stop, pause, latency, partition, duplicates
    target: str  # the service, or "caller->callee" for a link
    label: str  # e.g. "products killed"
    start: float
    end: float
    detail: NotRequired[str]  # what it hit, e.g. crash-applying's position at the kill


class Reads(TypedDict):
    """One strategy's user-orders reads in one second."""

    answered: int  # 2xx
    refused: int  # anything else: an error answer, a timeout, a connection refused
    p50_ms: float | None  # latency of the answered reads (None: none answered)
    p99_ms: float | None


class Second(TypedDict):
    """What one second of the run saw: [t, t + 1)."""

    t: int
    reads: dict[str, Reads]  # by strategy
    purchases_confirmed: int
    purchases_refused: int
    outbox_backlog: int | None  # orders' events not yet on the bus (None: no answer)
    consumer_behind: int | None  # events on the bus the read model has not applied
    staleness_p50_ms: float | None  # probe purchases confirmed in this second
    staleness_max_ms: float | None


class Distribution(TypedDict):
    count: int
    p50: float | None
    p99: float | None
    max: float | None


class StrategyFigures(TypedDict):
    """A strategy's reads over a stretch of the run: during the faults, or outside them."""

    reads: int
    availability: float | None  # answered / reads (None: no reads in that stretch)
    p50_ms: float | None
    p99_ms: float | None


class Checked(TypedDict):
    """What the checker compared once the run had healed."""

    confirmed: int  # purchases a client saw confirmed
    stored: int  # of those, found in the orders service exactly once
    replicated: int  # of those, in the read model exactly once
    verified_users: int  # users `verify` compared (read model against the monolith)


class Outcome(TypedDict):
    verdict: Verdict
    problems: list[str]  # what broke (invalid), or why it could not tell (unknown)
    recovered_in_s: float | None  # from the last heal until the read model caught up
    checked: Checked


class ExperimentReport(TypedDict):
    workload: Literal["reads"]  # a purchases scenario's report is a WritesReport
    scenario: str
    title: str
    shows: str  # what the scenario is there to show, one or two sentences
    bus: str  # log | nats
    started_at: str  # ISO 8601, UTC
    machine: str  # e.g. "Linux x86_64, 2 cores"
    seconds: float  # the load's planned length
    read_rate: float  # reads per second, per strategy
    purchase_rate: float  # purchases per second
    faults: list[Window]
    timeline: list[Second]
    during_faults: dict[str, StrategyFigures]  # by strategy
    outside_faults: dict[str, StrategyFigures]
    staleness_ms: list[float]  # every probe's, in the order they were confirmed
    staleness: Distribution
    outcome: Outcome


# --- a purchases workload (issue 27): every write strategy side by side ----------------------

#: what a purchase's first answer said, and what it finally was
Answer = Literal["confirmed", "rejected", "pending", "failed"]
ANSWERS: tuple[Answer, ...] = ("confirmed", "rejected", "pending", "failed")


class StrategySecond(TypedDict):
    """One write strategy's purchases sent in one second, and its slack sampled then."""

    answered: dict[str, int]  # by Answer: what the client was told at once
    ended: dict[str, int]  # by Answer: what each finally was (pending: never ended)
    outcome_p50_ms: float | None  # from the request to the purchase's outcome
    outcome_max_ms: float | None
    pending_orders: int | None  # orders pending at the second's last sample
    stock_held: int | None  # the invariant's slack: stock those pending orders hold


class WriteSecond(TypedDict):
    t: int
    strategies: dict[str, StrategySecond]


class WriteFigures(TypedDict):
    """A write strategy's purchases over the whole run."""

    sent: int
    confirmed: int  # in the end
    rejected: int
    pending: int  # still pending when the run stopped following them
    failed: int  # no answer, or an error: the client cannot tell what happened
    answered_pending: int  # told "pending" at first (a saga's 202)
    outcome_ms: Distribution  # request to outcome, of those that ended
    pending_for_ms: Distribution  # of those told pending: how long until their outcome
    reasons: dict[str, int]  # the rejections by reason (first words), most common first


class WriteChecked(TypedDict):
    confirmed: int  # purchases a client saw confirmed
    stored_once: int  # of those, in orders.db exactly once, confirmed
    scope: str  # the cast the invariant was checked on, e.g. "products 21-24, users 11-18"


class WriteOutcome(TypedDict):
    verdict: Verdict
    problems: list[str]
    checked: WriteChecked


class WritesReport(TypedDict):
    """`msshop experiment` of a purchases scenario: each write strategy's purchases over
    time under the same faults, each checked on its own cast."""

    workload: Literal["purchases"]
    scenario: str
    title: str
    shows: str
    bus: str
    started_at: str
    machine: str
    seconds: float
    purchase_rate: float  # per second, per strategy
    faults: list[Window]
    strategies: list[str]  # WriteStrategy's order; monolith, the reference, first
    timeline: list[WriteSecond]
    figures: dict[str, WriteFigures]
    outcomes: dict[str, WriteOutcome]
    recovered_in_s: float | None
    verdict: Verdict  # the worst of the strategies'


def worst(verdicts: list[Verdict]) -> Verdict:
    """invalid over unknown over valid: one strategy that broke makes the run invalid."""
    for verdict in ("invalid", "unknown"):
        if verdict in verdicts:
            return verdict
    return "valid"
