"""`msshop wait` and `up --detach --wait`: block until a condition holds for a sandbox's
services, the way `docker compose up --wait` and `aspire wait` do.

- healthy: each service running (as the supervisor reports it) and its health "ok";
- caught-up: nothing left to replicate: a writing service's outbox is empty (and, if it
  takes part in the saga, its steps have read the bus's head: issue 26, so no saga is left
  half-way), query's read model has applied the bus's head, a bus node answers;
- down: the services stopped (for the whole sandbox: no supervisor runs at all).

Each look is cheap: the supervisor's lock and state.json (what runs, what crashed), then
GET /health of the services that matter over kept-alive connections (the bus's head for
caught-up). The same loop is what `verify`, `buy --trace` and the experiments wait with
(checking.caught_up), so there is one notion of "caught up".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from msshop.contracts.config import Settings
from msshop.contracts.errors import InvalidArgument, MsshopError, SandboxError
from msshop.contracts.status import Health
from msshop.contracts.topology import BY_NAME, SERVICES
from msshop.contracts.waiting import (
    CONDITIONS,
    Condition,
    Outcome,
    ServiceWait,
    WaitReport,
)
from msshop.instruments.client import ShopClient
from msshop.runtime.orchestrator import lifecycle
from msshop.runtime.orchestrator.state import SandboxPaths, State, is_running, read_state

POLL = 0.05  # seconds between looks: a tenth of a person's reaction, a few GETs each
PROBE_TIMEOUT = 1.0  # seconds one /health may take (a paused service must not hold a look)
MAX_TIMEOUT = 3600.0
UP_TIMEOUT = 60.0  # `up --detach --wait caught-up`: how long replication may take
WRITERS = tuple(spec.name for spec in SERVICES if spec.publishes)
REPLICATION = (*WRITERS, "query")  # where events wait: the outboxes, then the read model
NODES = tuple(f"bus-{k}" for k in range(2, 6))  # a nats bus's other nodes (up to 5)
GONE = ("crashed", "failed")  # a service stays so until `msshop start`: no use waiting
DOWN = ("stopped", *GONE)


def check_condition(condition: str, allowed: Sequence[str] = CONDITIONS) -> Condition:
    if condition not in allowed:
        raise InvalidArgument(f"{{condition}} {condition!r} is not one of: "
                              f"{', '.join(allowed)}", "condition")
    return cast("Condition", condition)


def check_up_wait(condition: str) -> Condition:
    """`up --wait`: only for what a sandbox just started can reach."""
    return check_condition(condition, ("healthy", "caught-up"))


def check_timeout(timeout: float) -> float:
    if not 0 <= timeout <= MAX_TIMEOUT:  # also refuses nan
        raise InvalidArgument(f"{{timeout}} {timeout:g} is out of range; give seconds from 0 "
                              f"to {MAX_TIMEOUT:g}, e.g. {{timeout}} 30", "timeout")
    return timeout


def wait(settings: Settings, names: Sequence[str], condition: str, timeout: float,
         poll: float = POLL) -> WaitReport:
    """Wait until `condition` holds for the named services (none named: the sandbox's all),
    or `timeout` seconds have passed. Bad arguments raise InvalidArgument; anything else is
    told by the report's outcome."""
    wanted = check_condition(condition)
    check_timeout(timeout)
    named = list(dict.fromkeys(names))  # each once, in the order given
    for name in named:
        if name not in BY_NAME and name not in NODES:  # whether or not a sandbox runs
            lifecycle.check_service(name)
    started = time.monotonic()
    try:
        state = lifecycle.running_state(settings)
    except SandboxError as exc:
        gone = [_service(name, "-", ready=wanted == "down") for name in named]
        if wanted == "down":
            return _report(wanted, "reached", started, timeout, str(settings.sandbox_dir),
                           gone, [])
        return _report(wanted, "no-sandbox", started, timeout, str(settings.sandbox_dir),
                       gone, [exc.message])
    for name in named:  # now against this sandbox's own (bus-2 only with a nats cluster)
        lifecycle.check_service(name, state)
    client = ShopClient(state, timeout=min(PROBE_TIMEOUT, max(timeout, 0.2)))
    try:
        return until(client, wanted, named or None, timeout, poll, started=started)
    finally:
        client.close()


def until(client: ShopClient, condition: Condition, names: Sequence[str] | None,
          timeout: float, poll: float = POLL, patient: bool = True,
          started: float | None = None) -> WaitReport:
    """The loop: look, and look again every `poll` seconds until the condition holds, a
    service it needs has crashed, the sandbox has stopped, or `timeout` has passed.
    `names` None: every service of the sandbox (and for down: the supervisor too).
    Not `patient`: a service stopped on purpose ends the wait as a crashed one does (for
    callers that cannot wait for a person to start it again)."""
    paths = SandboxPaths(Path(client.state.sandbox))
    started = time.monotonic() if started is None else started
    deadline = started + timeout
    while True:
        state = read_state(paths) if is_running(paths) else None
        if state is None:  # no supervisor: everything is down
            gone = [_service(name, "-", ready=condition == "down") for name in names or ()]
            if condition == "down":
                return _report(condition, "reached", started, timeout, str(paths.root),
                               gone, [])
            return _report(condition, "no-sandbox", started, timeout, str(paths.root), gone,
                           [f"the sandbox in {paths.root} stopped while waiting; start one "
                            "with: msshop up --detach"])
        looked = _look(client, state, condition, names, patient)
        outcome: Outcome | None = None
        if looked.gone:
            outcome = "service-down"
        elif not looked.missing:
            outcome = "reached"
        elif time.monotonic() >= deadline:
            outcome = "timed-out"
        if outcome is not None:
            report = _report(condition, outcome, started, timeout, str(paths.root),
                             looked.services, looked.gone or looked.missing)
            if condition == "caught-up":
                report["bus_head"] = looked.head
            return report
        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))


@dataclass
class _Look:
    """One look at the sandbox: each service's part, and what does not hold yet."""

    services: list[ServiceWait] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # needed, and crashed: waiting is no use
    head: int | None = None


def _look(client: ShopClient, state: State, condition: Condition,
          names: Sequence[str] | None, patient: bool) -> _Look:
    looked = _Look()
    wanted = [name for name in names or state.services if name in state.services]
    if condition == "down":
        for name in wanted:
            service = state.services[name]
            ready = service.status in DOWN
            looked.services.append(_service(name, service.status, ready,
                                            None if ready else service.status,
                                            exit=service.exit))
            if not ready and names is not None:
                looked.missing.append(f"{name}: {service.status}")
        if names is None:  # the whole sandbox: down means no supervisor either
            looked.missing.append(f"the sandbox still runs (supervisor pid "
                                  f"{state.supervisor_pid})")
        return looked
    entries: dict[str, ServiceWait] = {}
    for name in wanted:
        if not (condition == "caught-up" and name == "query"):
            entries[name] = _one(client, state, condition, name, looked, patient)
    if condition == "caught-up" and "query" in wanted:
        # the head after the outboxes, the read model's position after the head: an event
        # committed before this look is then either counted as pending or in the head
        looked.head = _head(client)
        if looked.head is None:
            looked.missing.append("bus: does not answer, so its head is unknown")
        entries["query"] = _one(client, state, condition, "query", looked, patient)
        for name, entry in entries.items():
            if name != "query" and "position" in entry:
                _saga_steps(entry, looked)
    looked.services = [entries[name] for name in wanted]
    return looked


def _one(client: ShopClient, state: State, condition: Condition, name: str, looked: _Look,
         patient: bool) -> ServiceWait:
    """One service's part; what it lacks is added to `looked`."""
    service = state.services[name]
    if service.status in GONE or (not patient and service.status == "stopped"):
        looked.gone.append(f"{name}: {service.status}"
                           + (f" ({service.exit})" if service.exit else ""))
        return _service(name, service.status, False, service.status, exit=service.exit)
    if service.status != "running":  # starting, stopping, or stopped by someone
        looked.missing.append(f"{name}: {service.status}")
        return _service(name, service.status, False, service.status)
    health = _health(client, name)
    said = "not answering" if health is None else health.get("status", "ok")
    entry = _service(name, service.status, False, None, health=said)
    if health is None:
        entry["why"] = "not answering"
    elif said != "ok":  # a nats node not ready, or a service's background work failing
        problem = (health["nats"]["problem"] if "nats" in health
                   else "; ".join(health.get("problems", [])))
        entry["why"] = said + (f" ({problem})" if problem else "")
    elif condition == "caught-up" and "outbox" in health:
        pending = health["outbox"]["pending"]
        entry["pending"] = pending
        if pending:
            entry["why"] = f"{_events(pending)} not on the bus yet"
        if "saga" in health:  # judged against the head once it is read (_saga_steps)
            entry["position"] = health["saga"]["position"]
    elif condition == "caught-up" and "consumer" in health:
        consumer = health["consumer"]
        entry["position"] = consumer["position"]
        if looked.head is not None:
            entry["behind"] = max(0, looked.head - consumer["position"])
        if consumer.get("log_problem"):  # never caught up with a log it was not built from
            entry["why"] = str(consumer["log_problem"])
        elif looked.head is not None and consumer["position"] != looked.head:
            gap = looked.head - consumer["position"]  # past the head: the next look knows
            entry["why"] = (f"{_events(gap)} behind" if gap > 0 else
                            f"at position {consumer['position']:,}, past the bus's head "
                            f"{looked.head:,}")
        elif looked.head is None:
            entry["why"] = f"at position {consumer['position']:,}; the bus's head unknown"
    entry["ready"] = entry["why"] is None
    if not entry["ready"]:
        looked.missing.append(f"{name}: {entry['why']}")
    return entry


def _saga_steps(entry: ServiceWait, looked: _Look) -> None:
    """A saga participant's steps against the head read after them: its outbox was empty
    and its steps had read up to `position` in one answer, so an event it had yet to act on
    is in the head, and one it acted on is in its outbox or in the head."""
    if looked.head is None or not entry["ready"]:
        return
    gap = looked.head - entry["position"]
    entry["behind"] = max(0, gap)
    if gap > 0:
        entry["ready"], entry["why"] = False, f"its saga steps {_events(gap)} behind"
        looked.missing.append(f"{entry['name']}: {entry['why']}")


def _events(count: int) -> str:
    return f"{count:,} event{'' if count == 1 else 's'}"


def _health(client: ShopClient, name: str) -> Health | None:
    try:
        return client.health(name)
    except MsshopError:  # not answering (or answering an error): not healthy, this look
        return None


def _head(client: ShopClient) -> int | None:
    try:
        return client.bus_head()
    except MsshopError:  # a bus down, or choosing a leader: unknown, this look
        return None


def _service(name: str, status: str, ready: bool, why: str | None = None,
             health: str = "-", exit: str | None = None) -> ServiceWait:
    entry: ServiceWait = {"name": name, "status": status, "health": health, "ready": ready,
                          "why": why}
    if exit:
        entry["exit"] = exit
    return entry


def _report(condition: Condition, outcome: Outcome, started: float, timeout: float,
            sandbox: str, services: list[ServiceWait], missing: list[str]) -> WaitReport:
    return {"condition": condition, "reached": outcome == "reached", "outcome": outcome,
            "waited_ms": round((time.monotonic() - started) * 1000, 1),
            "timeout_s": timeout, "sandbox": sandbox, "services": services,
            "missing": missing}
