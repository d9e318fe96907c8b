"""What a service says of itself (GET /health) and what `msshop status` reports of the
whole sandbox. The services write the health documents; the orchestrator reads them and
builds the report; render and `status --json` show it."""

# No `from __future__ import annotations` here: a TypedDict with string annotations
# compiles each one as it is defined (4x the time), and the services import these
# on the way to their start (their OpenAPI documents name them).
from typing import NotRequired, TypedDict

from msshop.contracts.answers import ReplicaFreshness


class LinkFault(TypedDict):
    """Faults on a service's own calls to one other service (POST /chaos with `to`)."""

    latency_ms: float  # each call waits this long first
    jitter_ms: float  # and up to this much more, at random
    error_rate: float  # the share of calls failed as if the callee were unreachable
    duplicate_rate: float  # to the bus only: the share of events read handed over again
    # to the bus only, and only when not 0 (so a link without them reads as before):
    # the share of a page's updates of one aggregate handed newest first
    reorder_rate: NotRequired[float]
    # the share of events read handed over again, once, at the start of a later page
    redeliver_rate: NotRequired[float]


def link_fault(latency_ms: float = 0.0, jitter_ms: float = 0.0, error_rate: float = 0.0,
               duplicate_rate: float = 0.0, reorder_rate: float = 0.0,
               redeliver_rate: float = 0.0) -> LinkFault:
    """A link's faults, each left out 0 (Links, and the CLI and nemesis that set them)."""
    fault: LinkFault = {"latency_ms": latency_ms, "jitter_ms": jitter_ms,
                        "error_rate": error_rate, "duplicate_rate": duplicate_rate}
    if reorder_rate:
        fault["reorder_rate"] = reorder_rate
    if redeliver_rate:
        fault["redeliver_rate"] = redeliver_rate
    return fault


#: what the bus hands a reader out of the ordinary, by delivery fault (Misdelivered.fault)
DELIVERY_FAULTS = {"duplicate": "duplicate_rate", "reordered": "reorder_rate",
                   "redelivered": "redeliver_rate"}


class Misdelivered(TypedDict):
    """One event the log bus handed a reader out of the ordinary, on purpose (its delivery
    journal, GET /chaos/deliveries): what, where in the log, when, and by which fault."""

    reader: str
    fault: str  # duplicate (again, shuffled in) | redelivered (again, late) | reordered
    position: int
    type: str
    aggregate_type: str
    aggregate_id: int
    aggregate_version: int
    at: float  # unix seconds it was handed out


class DeliveryJournal(TypedDict):
    """GET /chaos/deliveries: a reader's misdeliveries, oldest first, the last `kept` at
    most (`dropped`: how many older ones were let go)."""

    reader: str
    entries: list[Misdelivered]
    kept: int
    dropped: int


class CrashedWhileApplying(TypedDict):
    """Where a service was SIGKILLed while its consumer applied a backlog (the nemesis's
    crash-applying fault, instruments/chaos.py's crash_while_applying)."""

    service: str
    start: int  # the position it had applied when the backlog was published
    position: int  # the position its /health said last, just before the kill
    head: int  # the backlog's end on the bus
    while_applying: bool  # start < position < head: killed mid-backlog
    attempts: int  # backlogs published until one was caught mid-way
    at: float  # unix seconds of the kill


class ChaosState(TypedDict):
    """Faults injected into a service (POST /chaos): into the requests it answers, and
    (`links`, by callee, only where there is a fault) into the calls it makes."""

    latency_ms: float
    jitter_ms: float
    error_rate: float
    links: NotRequired[dict[str, LinkFault]]
    # by caller, where a program of your own calls this service: the faults on its link
    # here, applied as its calls arrive on its door (runtime/platform/links.py's Doors)
    doors: NotRequired[dict[str, LinkFault]]


class OutboxHealth(TypedDict):
    """A writing service's outbox: events not yet on the bus, and why, if the relay fails."""

    pending: int
    last_position: int | None
    error: str | None
    failing_since: float | None


class InFlight(TypedDict):
    """orders: the purchases whose saga has not ended. A choreographed one is only
    "pending" here: where it is, no one service knows (`msshop sagas` puts it together
    from the three files); an orchestrated one's step is in orders.db (by SagaState)."""

    saga: int
    saga_orchestrated: dict[str, int]


class ConsumerHealth(ReplicaFreshness):
    """The query service's consumer: its freshness, and what it has applied."""

    applied: int
    dead_letters: int


class TaskHealth(TypedDict):
    """A piece of a service's background work (relay, consumer, checkpoint) as its
    supervisor sees it (runtime/platform/tasks.py)."""

    name: str
    state: str  # running | failing | stopped
    error: str | None  # why it fails, one line; None while it works
    failing_since: float | None  # unix seconds
    restarts: int  # how often it was started again after it failed


class NatsNode(TypedDict):
    """A nats-server of the sandbox's bus, as its monitoring port describes it."""

    server: str
    version: str
    connections: int
    leader: str  # the server that leads the stream's replicas ("" for a single server)
    problem: str  # why it is not ready ("": it is)


class TrespassTry(TypedDict):
    """A program of your own asked to open another service's file, as a bug would (POST
    /chaos/trespass, docs/protocol.md): what it tried, and what happened."""

    service: str
    into: str
    tried: str  # the path it tried to open and read
    how: str  # the way it tried: sqlite, open
    refused: bool  # the open or the read failed (where the kernel holds the rule, it did)
    error: str | None  # the operating system's words when refused


class TrespassHealth(TypedDict):
    """A program of your own's /health `trespass`: how often it was asked to, how often it
    was refused, and its last try (None: never asked)."""

    tried: int
    refused: int
    last: TrespassTry | None


class KeptHealth(TypedDict):
    """The answers the query service keeps in memory (services/query/kept.py)."""

    answers: int
    bytes: int  # what they hold, as counted against most_bytes
    most_bytes: int  # the setting query.kept_mib


class Health(TypedDict):
    """GET /health of any service; the keys after `rows` only where they apply. `status`
    is "ok", or "degraded" while a background task fails (`problems` says which, and why),
    or a nats-server's "not ready"."""

    service: str
    status: str
    pid: int
    ready_at: float | None
    chaos: ChaosState | None
    db: str
    rows: dict[str, int]
    # who holds the isolation rule in it: "kernel" (its Landlock ruleset) or "process"
    # (msshop's in-process guard alone: no Landlock here, or turned off)
    isolation: NotRequired[str]
    wal_bytes: NotRequired[int]  # the write-ahead log's size: it grows while checkpoints fail
    tasks: NotRequired[list[TaskHealth]]  # msshop's services: their background work
    # the calls it made to each service it calls, since it started (once it made one)
    calls: NotRequired[dict[str, int]]
    problems: NotRequired[list[str]]  # one line for each task that fails now
    outbox: NotRequired[OutboxHealth]  # users, products, orders
    # orders: takes it could not give back yet, retried in the background (issue 26)
    owed_give_backs: NotRequired[int]
    in_flight: NotRequired[InFlight]  # orders: the sagas not ended
    head: NotRequired[int]  # bus
    log: NotRequired[str]  # bus: the log's identity
    consumer: NotRequired[ConsumerHealth]  # query
    # users, products, orders: the consumer of the saga's events their steps apply
    saga: NotRequired[ConsumerHealth]
    rebuilding: NotRequired[bool]  # query
    kept: NotRequired[KeptHealth]  # query
    nats: NotRequired[NatsNode]  # a nats-server node of the bus (its health, so shaped)
    trespass: NotRequired[TrespassHealth]  # a program of your own that serves the trespass


class ServiceStatus(TypedDict):
    name: str
    status: str  # starting | running | stopping | stopped | crashed | failed
    pid: int | None
    port: int
    url: str
    db: str
    log: str
    # ok | degraded (a background task fails) | not answering (runs, but its /health did
    # not answer) | down | -
    health: str
    rows: dict[str, int] | None
    exit: str | None  # how it last ended, e.g. "killed by SIGKILL"
    ready_ms: float | None
    kind: NotRequired[str]  # service (msshop's) | nats-server | executable (a program of yours)
    # who holds the isolation rule: kernel (Landlock) | process (msshop's guard alone) |
    # none (a program of your own where the kernel does not)
    isolation: NotRequired[str]
    command: NotRequired[list[str]]  # executable: the program and its arguments
    # the ports it listens on for the calls of a program of your own, by caller
    doors: NotRequired[dict[str, int]]
    problems: NotRequired[list[str]]  # why its health is "degraded"
    outbox: NotRequired[OutboxHealth]
    head: NotRequired[int]
    consumer: NotRequired[ConsumerHealth]
    saga: NotRequired[ConsumerHealth]  # users, products, orders: the saga's steps
    chaos: NotRequired[ChaosState | None]
    nats: NotRequired[NatsNode]  # a node of a nats bus
    trespass: NotRequired[TrespassHealth]  # a program of your own: its trespasses, if told
    # health "not answering" or "down": why ("connection refused", "connection reset",
    # "no answer within 1 s", "answered 503")
    unanswered: NotRequired[str]


class BusReport(TypedDict):
    backend: str  # log | nats
    servers: list[str]  # nats: every node's client URL
    external: bool  # nats: a server msshop did not start
    replicas: int
    sandbox: str  # the sandbox's identity (data/sandbox.id), which names its log or stream
    stream: str  # nats: the sandbox's stream ("" with the log)


class SupervisorStatus(TypedDict):
    pid: int
    started_at: float


class StatusReport(TypedDict):
    running: bool
    sandbox: str
    mode: str  # foreground | detached
    supervisor: SupervisorStatus
    services: list[ServiceStatus]
    bus: BusReport
