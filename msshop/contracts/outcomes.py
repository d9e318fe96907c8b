"""What the commands print with `--json`, where it is not already a service's own answer.

The services' answers (a product page, dead letters, a replay) are printed as the service
gave them (contracts/shop.py), and some reports as their instrument made them (a wait, a
seed, an inspection); these are the documents the CLI puts together itself. Each is the
`document` of the command's Outcome (msshop/cli/emit.py), so the type is the shape:
docs/cli.md shows each one under its command.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from msshop.contracts.answers import Freshness, UserOrders
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
    stream: NotRequired[str]  # nats: the sandbox's stream (contracts/streams.py)
    notes: list[str]  # what the person should hear, e.g. a stale state file cleared
    services: list[RunningService]
    waited: NotRequired[WaitReport]  # with --wait: as `msshop wait --json` prints it


class SandboxDown(TypedDict):
    """`msshop down --json`."""

    sandbox: str
    supervisor_pid: int
    stopped: list[str]


class StatusUnknown(TypedDict):
    """`msshop status --json` when no sandbox runs (exit 1): still a document, saying why."""

    running: Literal[False]
    sandbox: str
    error: str


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
    unsaved: NotRequired[str]  # why the trace was not kept (a full disk): `trace` lacks it


class Purchase(TypedDict):
    """`msshop buy --json`: confirmed with the order, or rejected with the reason; a saga's
    may be pending (its outcome not known yet, or not within --wait's timeout)."""

    outcome: Literal["confirmed", "rejected", "pending"]
    strategy: str  # the write strategy: monolith | direct-call | saga
    order: Order | None  # None when rejected (a saga's: the order, whatever its status)
    created: bool  # false: the same request id had already placed it
    reason: NotRequired[str]  # rejected: why (out of stock, not enough credit, no such id)
    journey: NotRequired[Followed]


class SignUp(TypedDict):
    """`msshop signup --json`."""

    user: User
    journey: NotRequired[Followed]


class QueryAnswer(TypedDict):
    """`msshop query --json`: the answer, its latency, its trace id and every span."""

    answer: UserOrders
    latency_ms: float
    trace_id: str
    spans: list[Span]
    unsaved: NotRequired[str]  # why the trace was not kept (a full disk): `trace` lacks it


class ListedTrace(TypedDict):
    """One item of `msshop traces --json`."""

    trace_id: str
    kind: str  # question (a read) | write (`buy --trace`, `signup --trace`)
    user_id: int
    strategy: str  # with the fan-out for direct-call, e.g. "direct-call (naive)"
    started_at: float  # unix seconds
    duration_ms: float
    services: list[str]
    ok: bool  # no span failed
    spans: int


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


class Poisoned(TypedDict):
    """`msshop poison --json`: where the event no read model can apply went."""

    type: Literal["Poison"]
    source: Literal["users"]
    position: int


class LogEntry(TypedDict):
    """One line of `msshop logs --json`."""

    service: str
    time: str | None  # ISO 8601 with the offset; null: the line has no time of its own
    level: str | None
    message: str
    line: str


class StrategyCompared(TypedDict):
    strategy: str  # with its fanout for direct-call, e.g. "direct-call (naive)"
    error: str | None  # set: it failed, and why
    equal: bool  # equal to the monolith's answer
    differences: list[str]
    # a saga's orders seen pending in one answer and decided in the other (issue 26): all
    # that differs when the answer is only behind (or newer), in words
    in_flight: list[str]
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
    """`msshop verify --json`: `ok` false (and exit 1) when any user differs or the
    invariant is broken."""

    ok: bool
    users: int
    orders: int
    position: int  # the bus position the read model was compared at
    head: int
    differences: dict[str, list[str]]  # user id -> what differs
    invariant: list[str]  # each breach of stock and credit across services, one line


class UnfinishedSaga(TypedDict):
    """A saga not finished: its order, the step it has reached and whose move it is."""

    order_id: int
    purchase: str  # the purchase's key (request_id), as every step is keyed
    user_id: int
    product_id: int
    quantity: int
    strategy: str  # "saga" (choreographed) or "saga-orchestrated"
    state: str  # choreographed: "pending"; orchestrated: its SagaState (contracts/sagas.py)
    step: str  # what has been done, what not yet (one phrase)
    waits_for: str  # the service whose move it is: products, users or orders
    age_seconds: float  # since the order was placed


class SagasReport(TypedDict):
    """`msshop sagas --json`: the sagas not finished, the oldest first."""

    count: int  # how many are not finished
    shown: int  # how many of them `sagas` lists (the oldest)
    sagas: list[UnfinishedSaga]


class DashboardAddress(TypedDict):
    """`msshop ui --json`: where the dashboard answers, and the address that logs in (its
    token is new each time the dashboard starts)."""

    url: str
    login: str
    pid: int
