"""What the commands print with `--json`, where it is not already a service's own answer.

The services' answers (a product page, dead letters, a replay) are printed as the service
gave them (contracts/shop.py); these are the documents the CLI puts together itself.
docs/cli.md shows each one under its command.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from msshop.contracts.answers import Freshness
from msshop.contracts.shop import Order, User
from msshop.contracts.spans import Span
from msshop.contracts.waiting import WaitReport


class RunningService(TypedDict):
    name: str
    pid: int | None
    port: int
    url: str
    db: str
    log: str


class SandboxUp(TypedDict):
    """`msshop up --detach --json` (never the sandbox's token: that stays in state.json)."""

    sandbox: str
    mode: str
    supervisor_pid: int
    up_ms: float
    bus: str  # log | nats
    notes: list[str]  # what the person should hear, e.g. a stale state file cleared
    services: list[RunningService]
    waited: NotRequired[WaitReport]  # with --wait: as `msshop wait --json` prints it


class SandboxDown(TypedDict):
    """`msshop down --json`."""

    sandbox: str
    supervisor_pid: int
    stopped: list[str]


class ServiceChanged(TypedDict):
    """`msshop stop|start|restart|kill SERVICE --json`: what was done and where it is now."""

    service: str
    action: Literal["stopped", "started", "restarted", "killed"]
    status: str  # as `msshop status` would say: running, stopped, crashed
    ready_ms: float | None  # start, restart: fork to healthy
    can: str | None  # start, restart: what it cannot do yet, e.g. while it catches up
    exit: str | None  # kill: how it ended, e.g. "killed by SIGKILL"


class Followed(TypedDict):
    """A write followed to the read model (`--trace`): its trace and the replication lag."""

    trace_id: str
    applied: bool  # false: still on its way (e.g. the bus is down)
    lag_ms: float | None
    spans: list[Span]


class Purchase(TypedDict):
    """`msshop buy --json`."""

    order: Order
    created: bool  # false: the same request id had already placed it
    journey: NotRequired[Followed]


class SignUp(TypedDict):
    """`msshop signup --json`."""

    user: User
    journey: NotRequired[Followed]


class ShownTrace(TypedDict):
    """`msshop trace ID --json`."""

    trace_id: str
    spans: list[Span]


class EventOnTheBus(TypedDict):
    """One line of `msshop events --json`."""

    position: int
    id: str
    type: str
    source: str
    aggregate_type: str
    aggregate_id: int
    aggregate_version: int
    occurred_at: float
    data: dict[str, Any]
    trace_id: str | None
    parent_span: str | None


class StrategyCompared(TypedDict):
    strategy: str  # with its fanout for direct-call, e.g. "direct-call (naive)"
    error: str | None  # set: it failed, and why
    equal: bool  # equal to the monolith's answer
    differences: list[str]
    orders: int
    latency_ms: float
    sequential_hops: int  # network stages behind the query service
    services: list[str]
    databases: dict[str, list[str]]  # service -> the files it opened
    rows_read: int
    freshness: Freshness | None
    trace_id: str | None


class Comparison(TypedDict):
    """`msshop compare --json`."""

    user_id: int
    strategies: list[StrategyCompared]


class Verification(TypedDict):
    """`msshop verify --json`: `ok` false (and exit 1) when any user differs."""

    ok: bool
    users: int
    orders: int
    position: int  # the bus position the read model was compared at
    head: int
    differences: dict[str, list[str]]  # user id -> what differs
