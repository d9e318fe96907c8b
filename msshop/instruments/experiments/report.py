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
