"""What `msshop bench` reports: the figures render prints and `bench --json` writes."""

from __future__ import annotations

from typing import TypedDict


class Figures(TypedDict):
    """A latency distribution in ms (count 0: nothing was measured)."""

    count: int
    p50: float
    p99: float
    mean: float


class Staged(Figures):
    """A latency distribution, and the sequential network stages behind one answer."""

    stages: int


class PlanReport(TypedDict):
    requests: int
    purchases: int
    background: dict[str, int]  # the seed plan: users, products, orders, seed
    load_seconds: float


class Purchases(TypedDict):
    count: int
    per_second: float


class Load(TypedDict):
    """Purchases from many clients for a while, as fast as they go or paced."""

    clients: int
    seconds: float
    confirmed: int
    failed: int
    per_second: float
    target_per_second: float | None
    latency_ms: Figures
    lag_ms: Figures


class WriteFigures(TypedDict):
    """One write strategy's purchases (issue 26): the sustained rate of confirmed outcomes
    from `clients`, and the time from request to outcome at a paced rate."""

    clients: int
    per_second: float
    confirmed: int
    failed: int
    target_per_second: float
    paced_per_second: float
    outcome_ms: Figures


class Rebuild(TypedDict):
    events: int
    seconds: float
    per_second: float


class Measured(TypedDict):
    """What is measured on the running sandbox."""

    # floor, floor rows, replicated, direct-call, direct-call naive
    latency_ms: dict[str, Figures]
    by_orders: dict[int, dict[str, Staged]]  # orders per user -> strategy -> figures
    purchases: Purchases
    lag_ms: Figures
    sustained: Load
    paced: Load
    writes: dict[str, WriteFigures]  # write strategy -> its figures
    rebuild: Rebuild


class BenchReport(Measured):
    bus: str  # the backend measured: log | nats
    quick: bool
    plan: PlanReport
    up_ms: float
    fork_to_healthy_ms: float
