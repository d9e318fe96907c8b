"""Disturbing a running sandbox on purpose, for a class to see what happens. The services
check the sandbox's token, which only the sandbox's owner can read.

- `msshop chaos`: make a service slow or failing, or clear it; or (`to`) only its calls to
  one other service: slow, failing (a partition), or (to the bus) events handed over twice.
  A program of your own run as a service has no /chaos: the faults on its calls are set at
  the doors the services it calls keep for it (runtime/platform/links.py's Doors), and
  the bus hands it events again by its credential; the requests it answers take none;
- `msshop trespass`: make a service try to open another's database file: the isolation
  guard refuses, and says so;
- `msshop poison`: put an event on the bus that no read model can apply: the query service
  dead-letters it and goes on.
"""

from __future__ import annotations

import contextlib
import time

from msshop.contracts.config import Settings
from msshop.contracts.errors import (
    InvalidArgument,
    MsshopError,
    SandboxError,
    ServiceError,
    UsageError,
)
from msshop.contracts.kinds import Kind
from msshop.contracts.shop import ChaosAnswer, Trespassed
from msshop.contracts.status import (
    ChaosState,
    CrashedWhileApplying,
    DeliveryJournal,
    LinkFault,
    TrespassTry,
    link_fault,
)
from msshop.contracts.topology import BUS, BUS_DOOR, BY_NAME, NAMES, keeps_doors_of
from msshop.instruments import waiting
from msshop.instruments.client import ShopClient
from msshop.runtime.orchestrator import lifecycle
from msshop.runtime.orchestrator.state import State

MAX_DELAY_MS = 60_000  # the services' own limit (runtime/platform/chaos.py)


def inject(settings: Settings, service: str, latency_ms: float, jitter_ms: float,
           error_rate: float, clear: bool, to: str | None = None,
           duplicate_rate: float = 0.0, reorder_rate: float = 0.0,
           redeliver_rate: float = 0.0) -> ChaosAnswer:
    """Inject faults into the requests `service` answers, or with `to`, into its calls to
    that service (error rate 1: a partition on that link; to the bus, the delivery faults
    too: duplicates, reorder, late redelivery); `clear` removes them (with `to`: that
    link's only)."""
    check_faults(service, latency_ms, jitter_ms, error_rate, clear, to, duplicate_rate,
                 reorder_rate, redeliver_rate)
    state = lifecycle.running_state(settings)
    link = link_fault(latency_ms, jitter_ms, error_rate, duplicate_rate, reorder_rate,
                      redeliver_rate)
    if service in state.services and state.services[service].kind == Kind.EXECUTABLE and (
            to is not None or clear):  # its links; the requests it answers take none
        return program_links(state, service, to, None if clear else link)
    lifecycle.check_msshop_service(service, state, "take chaos (only msshop's services do)")
    faults: ChaosState | LinkFault | None = None  # None: clear
    if not clear and to is None:
        faults = {"latency_ms": latency_ms, "jitter_ms": jitter_ms, "error_rate": error_rate}
    elif not clear:
        faults = link
    return ShopClient(state).chaos(service, faults, to=to)


def deliveries(settings: Settings, reader: str, limit: int = 10_000) -> DeliveryJournal:
    """What the bus's delivery faults handed `reader`, a program of your own, out of the
    ordinary: each event with its fault and when (evidence for a checker). Kept by the
    log bus, or on nats by the bus's door, where that program reads."""
    state = lifecycle.running_state(settings)
    if state.bus.backend != "log" and BUS_DOOR.name not in state.services:
        raise UsageError("the delivery journal is kept where a program of your own reads "
                         "the bus: no program of your own reads this sandbox's nats bus; "
                         "run one as the query service for it")
    return ShopClient(state).deliveries(reader, limit)


BACKLOG = 1500  # orders in a crash-applying backlog: more than one page of every reader's
SLOW_READS_MS = 100  # the consumer's reads of the backlog slowed so, to be caught mid-way


def crash_while_applying(settings: Settings, service: str = "query", backlog: int = BACKLOG,
                         attempts: int = 3, timeout: float = 20.0) -> CrashedWhileApplying:
    """SIGKILL `service` while its consumer applies a backlog: publish `backlog` orders
    (of a user and a product made for it), then kill it as soon as its /health position
    is past where it was and short of the backlog's end. Its reads of the bus are slowed
    meanwhile (its link's faults put back after), so each page's position shows. Tried
    again with another backlog, `attempts` in all, if the whole one was applied between
    two looks; the record says where it was killed. Not started again: the caller does."""
    state = lifecycle.running_state(settings)
    lifecycle.check_service(service, state)
    client = ShopClient(state, timeout=10)
    # a program of your own's reads are slowed at the bus's door for it (the log bus's, or
    # on nats the bus's door; where there is none, it is caught mid-way by looking often)
    slowed = state.services[service].kind != Kind.EXECUTABLE or no_door(state, service, "bus") \
        is None
    before = link_now(client, state, service, "bus") if slowed else None
    if slowed:
        set_link(state, service, "bus", link_fault(latency_ms=SLOW_READS_MS))
    try:
        mark = f"crash-{time.time_ns()}"
        # stock and credit for every order of every attempt: purchases take both (issue 26)
        enough = backlog * max(attempts, 1)
        user = {"id": client.add_batch("users", [{
            "email": f"{mark}@example.com", "name": "Crash Test",
            "credit": float(enough)}]).get("ids", [0])[0]}
        created = client.add_batch("products", [{"sku": mark, "title": "Crash test",
                                                 "price": 1.0, "stock": enough}])
        product = created.get("ids", [0])[0]
        applied_own_events(client, service)
        for attempt in range(1, attempts + 1):
            start = consumer_position(client, service)
            head = client.bus_head()
            orders = [{"user_id": user["id"], "product_id": product, "quantity": 1,
                       "request_id": f"{mark}-{attempt}-{n}"} for n in range(backlog)]
            client.add_batch("orders", orders)
            head += backlog  # at least: the workload may be writing too
            position = poll_until_past(client, service, start, timeout)
            if start < position < head or attempt == attempts:
                lifecycle.kill(settings, service)
                return {"service": service, "start": start, "position": position,
                        "head": head, "while_applying": start < position < head,
                        "attempts": attempt, "at": time.time()}
        raise UsageError(f"crash-applying: give at least one attempt, not {attempts}")
    finally:
        if slowed:  # a killed program's door is still there; our own's links died with it
            with contextlib.suppress(MsshopError):
                set_link(lifecycle.running_state(settings), service, "bus", before)
        client.close()


def applied_own_events(client: ShopClient, service: str, seconds: float = 2.0) -> None:
    """Until the consumer has applied the crash's own user and product: else the first
    page past `start` may be theirs, a kill there harmless (a user or product applied
    twice is the same), and the backlog's orders never caught mid-way. Bounded: under a
    workload it goes as far as it gets in `seconds`."""
    waiting.until(client, "caught-up", ("users", "products"), seconds, poll=0.01,
                  patient=False)
    head = client.bus_head()
    deadline = time.monotonic() + seconds
    while consumer_position(client, service) < head and time.monotonic() < deadline:
        time.sleep(0.002)


def consumer_position(client: ShopClient, service: str) -> int:
    consumer = client.health(service).get("consumer")
    if consumer is None:
        raise UsageError(f"{service} has no consumer to crash while it applies; name the "
                         "query service")
    return int(consumer["position"])


def poll_until_past(client: ShopClient, service: str, start: int, timeout: float) -> int:
    """The consumer's position once it is past `start` (looking every 2 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        position = consumer_position(client, service)
        if position > start:
            return position
        time.sleep(0.002)
    raise SandboxError(f"{service} applied nothing of the backlog within {timeout:g} s; "
                       f"see: msshop status")


def link_now(client: ShopClient, state: State, caller: str, callee: str) -> LinkFault | None:
    """The faults on the link caller -> callee now, wherever kept (None: none)."""
    if state.services[caller].kind == Kind.EXECUTABLE:
        chaos = client.health(client.door_keeper(callee)).get("chaos")
        return (chaos.get("doors") or {}).get(caller) if chaos else None
    chaos = client.health(caller).get("chaos")
    return (chaos.get("links") or {}).get(callee) if chaos else None


def doors_into(state: State, caller: str) -> list[str]:
    """The links of `caller`, a program of your own, that a door keeps: the services it
    calls (and on nats the bus, whose door is a process of its own)."""
    return [keeps_doors_of(name) for name, s in state.services.items()
            if s.doors and caller in s.doors]


def no_door(state: State, caller: str, callee: str) -> str | None:
    """Why the link caller -> callee cannot take faults, caller being a program of your
    own (one line naming the fix), or None: it can."""
    if callee in doors_into(state, caller):
        return None
    if callee == BUS and state.bus.backend == "nats":  # a sandbox started before the door
        return (f"{caller} -> bus: the faults on a program of your own's link to the bus "
                "are kept by the bus's door, which this sandbox has not started; restart "
                "it (msshop down, msshop up) to have one")
    return (f"{caller} -> {callee}: {callee} is not one of msshop's services, so it keeps "
            f"no door for {caller}'s calls; put the fault on a link into one of: "
            + ", ".join(doors_into(state, caller)))


def program_links(state: State, caller: str, to: str | None, fault: LinkFault | None
                  ) -> ChaosAnswer:
    """`msshop chaos` on a program of your own: the faults on its calls to `to` (None:
    every link cleared), set at the callees' doors; its links now."""
    if to is None and fault is not None:
        raise UsageError(f"{caller}: give the link to put the fault on, e.g. msshop chaos "
                         f"{caller} --to users --latency 200")
    if to is not None and (why := no_door(state, caller, to)) is not None:
        raise UsageError(why)
    client = ShopClient(state)
    try:
        for callee in [to] if to is not None else doors_into(state, caller):
            client.door_chaos(callee, caller, fault)
        links = {}
        for callee in doors_into(state, caller):
            chaos = client.health(client.door_keeper(callee)).get("chaos")
            doors = chaos.get("doors", {}) if chaos else {}
            if caller in doors:
                links[callee] = doors[caller]
    finally:
        client.close()
    return {"service": caller, "chaos": None, "links": links}


def set_link(state: State, caller: str, callee: str, fault: LinkFault | None,
             timeout: float = 5.0) -> None:
    """The faults on the link caller -> callee (None: none), wherever they are kept: in
    the caller, or for a program of your own, at the callee's door for it."""
    client = ShopClient(state, timeout=timeout)
    try:
        if state.services[caller].kind == Kind.EXECUTABLE:
            if (why := no_door(state, caller, callee)) is not None:
                raise UsageError(why)
            client.door_chaos(callee, caller, fault)
        else:
            client.chaos(caller, fault, to=callee)
    finally:
        client.close()


def check_faults(service: str, latency_ms: float, jitter_ms: float, error_rate: float,
                 clear: bool, to: str | None, duplicate_rate: float,
                 reorder_rate: float = 0.0, redeliver_rate: float = 0.0) -> None:
    """Refuse what the service would refuse, as one line naming the fix (InvalidArgument)."""
    if to is not None and (to not in NAMES or to == service):
        others = ", ".join(name for name in NAMES if name != service)
        raise InvalidArgument(f"{{to}} {to!r}: name the service that {service}'s calls to "
                              f"take faults go to, one of: {others}", "to")
    if to is not None and service in BY_NAME and not BY_NAME[service].calls_others:
        raise InvalidArgument(f"{service} calls no other service: put the link on its "
                              f"caller, e.g. msshop chaos query {{to}} {service} "
                              "{error_rate} 1", "to", "error_rate")
    for name, rate, how in (("duplicate_rate", duplicate_rate, "again"),
                            ("reorder_rate", reorder_rate, "out of order"),
                            ("redeliver_rate", redeliver_rate, "again, late")):
        if rate and to != "bus":
            raise InvalidArgument(f"{{{name}}} is the bus handing out events {how}: give it with "
                                  f"{{to}} bus, e.g. msshop chaos {service} {{to}} bus "
                                  f"{{{name}}} 0.3", name, "to")
    share = " (a share: 0.3 is 30%)"
    for name, value, high, unit in (("latency_ms", latency_ms, MAX_DELAY_MS, " ms"),
                                    ("jitter_ms", jitter_ms, MAX_DELAY_MS, " ms"),
                                    ("error_rate", error_rate, 1, share),
                                    ("duplicate_rate", duplicate_rate, 1, share),
                                    ("reorder_rate", reorder_rate, 1, share),
                                    ("redeliver_rate", redeliver_rate, 1, share)):
        if not 0 <= value <= high:
            raise InvalidArgument(f"{{{name}}} {value:g}: give a value from 0 to {high:,}{unit}",
                                  name)
    given = (latency_ms or jitter_ms or error_rate or duplicate_rate or reorder_rate
             or redeliver_rate)
    if clear and given:
        raise InvalidArgument("{clear} removes every fault (with {to}: that link's); give it "
                              "alone", "clear", "to")
    if not clear and not given:
        raise InvalidArgument("say what to inject: {latency_ms} MS, {jitter_ms} MS or "
                              "{error_rate} P (with {to} bus also {duplicate_rate} P), or "
                              "{clear}", "latency_ms", "jitter_ms", "error_rate", "to",
                              "duplicate_rate", "clear")


def trespass(settings: Settings, service: str, into: str) -> Trespassed:
    """Make `service` try to open `into`'s database file: msshop's own services are
    refused by their isolation guard; a program of your own is asked to try (POST
    /chaos/trespass, docs/protocol.md) and says what happened (`held`)."""
    state = lifecycle.running_state(settings)
    lifecycle.check_service(service, state)
    program = state.services[service].kind == Kind.EXECUTABLE
    if not program:
        lifecycle.check_msshop_service(service, state, "open a database file")
    others = [n for n, s in state.services.items() if s.kind == Kind.SERVICE and n != service]
    if into not in others:
        raise InvalidArgument(f"{{into}} {into!r}: name another service whose file to try: "
                              + ", ".join(others), "into")
    if program:
        return program_trespass(ShopClient(state), service, into, state.services[into].db)
    return ShopClient(state).trespass(service, into)


def program_trespass(client: ShopClient, service: str, into: str, path: str) -> Trespassed:
    """A program of your own asked to open and read `path` (`into`'s file, where the state
    says it is); its answer checked against the contract."""
    import msgspec

    try:
        answer = client.trespass_program(service, into, path)
    except ServiceError as exc:
        if exc.status in (404, 405, 501):
            raise SandboxError(f"{service} is your program; it does not serve POST "
                               "/chaos/trespass: see docs/protocol.md") from None
        raise
    try:
        tried = msgspec.convert(answer, TrespassTry)
    except msgspec.ValidationError as exc:
        raise SandboxError(f"{service} answered POST /chaos/trespass with something other "
                           f"than docs/protocol.md says ({exc}); fix your program") from None
    return {"service": service, "into": into, "tried": tried["tried"],
            "refused": tried["error"] or "", "held": tried["refused"], "how": tried["how"]}


def poison(settings: Settings, source: str = "users") -> int:
    """Append, as `source` would (with its credential, which the owner derives), an event of
    a type no read model knows (events.poison); its position. The consumer dead-letters it
    and goes on."""
    import asyncio

    from msshop.contracts import events

    state = lifecycle.running_state(settings)
    body = events.poison(source)

    async def append() -> int:
        bus = ShopClient(state).bus(as_service=source)
        try:
            return (await bus.append([body]))[0]
        finally:
            await bus.close()

    return asyncio.run(append())
