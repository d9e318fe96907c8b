"""The sandbox: up, down, status, the live view of a foreground `up`, log lines, and what
the service commands (stop, start, restart, kill) say."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from msshop.contracts.streams import all_subjects
from msshop.contracts.topology import KEEPS_NO_DATA
from msshop.render.console import (
    STATUS_STYLES,
    clock,
    data,
    note,
    relative,
    service_name,
)
from msshop.render.shop import fault_words, fitted, link_words
from msshop.render.tables import Column, fitted_table

if TYPE_CHECKING:
    from msshop.contracts.status import Health, ServiceStatus, StatusReport
    from msshop.runtime.orchestrator.state import State


def ready(out: Console, state: State, seconds: float | None = None) -> None:
    took = f" in {seconds * 1000:.0f} ms" if seconds is not None else ""
    note(out, f"sandbox {state.sandbox} is up{took} (supervisor pid {state.supervisor_pid}, "
              f"{state.mode})")
    if state.bus.backend == "nats":  # which stream: on a shared server, this sandbox's own
        where = ", ".join(state.bus.servers) if state.bus.external else "its own nats-server"
        note(out, f"events on NATS stream {state.bus.stream} (subjects "
                  f"{all_subjects(state.bus.sandbox)}) at {where}")
    for name, service in state.services.items():
        line = Text("  ") + service_name(f"{name:<9}") + Text(
            f" {service.url:<23} pid {service.pid:<7} {relative(service.db, state.sandbox)}")
        out.print(line, soft_wrap=True)


def up_detached(out: Console, state: State, seconds: float, notes: list[str]) -> None:
    """`up --detach` returned: what the person should hear, where everything runs, and how
    to stop it."""
    for message in notes:
        note(out, message)
    ready(out, state, seconds)
    note(out, "stop it with: msshop down")


def foreground_end(out: Console) -> None:
    note(out, "sandbox stopped")


def shutdown(out: Console, state: State) -> None:
    note(out, f"sandbox {state.sandbox} is down: stopped " + ", ".join(state.services)
         + f" and the supervisor (pid {state.supervisor_pid})")


def stop_note(out: Console, service: str) -> None:
    note(out, f"{service} stopped")


def start_note(out: Console, service: str, ready_ms: float,
                    health: Health | None = None, restarted: bool = False) -> None:
    """Started, and what it can do now (all of it, unless it says otherwise)."""
    can = abilities(health) if health is not None else None
    note(out, f"{service} {'restarted' if restarted else 'started'}, healthy in "
              f"{ready_ms:.0f} ms" + (f"; it {can}" if can else ""))


def kill_note(out: Console, service: str, state: State) -> None:
    info = state.services[service]
    note(out, f"{service} {info.exit or 'killed'}; the supervisor reports it {info.status}; "
              f"bring it back with: msshop start {service}")


# The sandbox's tables keep the service and its state whole; what goes first on a narrow
# terminal is what `msshop status --json` or the service's own name also tells.
SERVICE_COLUMNS = (Column("service"), Column("status"), Column("pid", drop=3),
                   Column("port", drop=4), Column("health", drop=5),
                   Column("database", drop=2), Column("rows", drop=1))


def status_table(out: Console, status: StatusReport) -> Table:
    rows: list[list[RenderableType]] = [[service_name(service["name"]),
             Text(service["status"], style=STATUS_STYLES.get(service["status"], "")),
             str(service["pid"] or "-"),
             str(service["port"]),
             Text(service["health"], style="green" if service["health"] == "ok" else "red"),
             "-" if service["name"] in KEEPS_NO_DATA
             else relative(service["db"], status["sandbox"]),
             row_counts(service["rows"])]
            for service in status["services"]]
    return fitted_table(out, SERVICE_COLUMNS, rows,
                        title=f"sandbox {status['sandbox']} ({status['mode']}, supervisor pid "
                              f"{status['supervisor']['pid']})", title_justify="left")


def row_counts(rows: dict[str, int] | None) -> str:
    """A service's tables and their rows, one a line (a read model has several)."""
    if not rows:
        return "-"
    return "\n".join(f"{table.removesuffix('_replica')} {count:,}"
                     for table, count in rows.items())


def _saga_lines(by_name: dict[str, ServiceStatus]) -> list[str]:
    """The saga's step consumers (users, products, orders: issue 26), when one is behind,
    has dead letters or a problem; nothing while they keep up (every sandbox has them)."""
    behind = [f"{name} {steps['behind']:,}" for name, s in by_name.items()
              if (steps := s.get("saga")) is not None and steps["behind"] > 0]
    dead = [f"{name} {steps['dead_letters']:,}" for name, s in by_name.items()
            if (steps := s.get("saga")) is not None and steps["dead_letters"]]
    lines = []
    if behind:
        lines.append("saga steps behind the bus (events): " + ", ".join(behind))
    if dead:
        lines.append("saga steps dead-lettered (their orders stay pending): "
                     + ", ".join(dead))
    for name, s in by_name.items():
        if (steps := s.get("saga")) is not None and steps["bus_error"]:
            lines.append(f"  the {name} saga steps are retrying: {steps['bus_error']}")
    return lines


def replication_lines(status: StatusReport) -> list[str]:
    """Outbox backlogs, the bus's head and the consumer's position, in words."""
    by_name = {s["name"]: s for s in status["services"]}
    lines = []
    nobody: ServiceStatus | None = None
    outboxes = [f"{name} {outbox['pending']:,}" for name, s in by_name.items()
                if (outbox := s.get("outbox")) is not None]
    waiting = sum(outbox["pending"] for s in by_name.values()
                  if (outbox := s.get("outbox")) is not None)
    for s in status["services"]:  # background work failing first: it is what to fix
        lines += s.get("problems", [])
    if outboxes:
        lines.append("outbox backlog: " + ", ".join(outboxes))
    for name, s in by_name.items():
        if (outbox := s.get("outbox")) is not None and outbox["error"]:
            lines.append(f"  the {name} relay is retrying: {outbox['error']}")
    heads = [s["head"] for s in status["services"] if "head" in s]
    if heads:  # the log, or the nodes of a nats bus that answered (each knows the head)
        lines.append(f"bus: head at position {max(heads):,}" + _nats_words(status))
    elif "bus" in status and status["bus"]["external"]:
        lines.append("bus: NATS JetStream at " + ", ".join(status["bus"]["servers"])
                     + f", stream {status['bus']['stream']} (not started by msshop)")
    lines += _saga_lines(by_name)
    query = by_name.get("query", nobody)
    consumer = query.get("consumer") if query is not None else None
    if consumer:
        state = "caught up" if consumer["caught_up"] else f"{consumer['behind']:,} behind"
        if consumer["caught_up"] and waiting:  # the bus is current, the shop is not
            state = f"caught up with the bus; {waiting:,} event(s) not on the bus yet"
        lines.append(f"query: read model at position {consumer['position']:,} of "
                     f"{consumer['bus_head']:,} ({state}), {consumer['dead_letters']:,} "
                     "dead letter(s)")
        if consumer["bus_error"]:  # the bus's failure; the consumer's own is a problem above
            lines.append(f"  its consumer is retrying: {consumer['bus_error']}")
        if problem := consumer.get("log_problem"):
            lines.append(f"  {problem}")
        if query is not None and (can := abilities(query)):
            lines.append(f"  query {can}")
    for s in status["services"]:
        if (node := s.get("nats")) and node["problem"]:
            lines.append(f"{s['name']} is not ready: {node['problem']}")
        if c := s.get("chaos"):
            if words := fault_words(c):  # else links only
                lines += fitted(f"chaos in {s['name']}:", words)
            for callee, fault in c.get("links", {}).items():
                lines += fitted(f"chaos on {s['name']} -> {callee}:", link_words(fault))
        if why := s.get("unanswered"):
            lines.append(f"{s['name']} {_runs(s)}is not answering: {why}; see: msshop logs "
                         f"{s['name']}")
        if s["exit"] and s["status"] in ("crashed", "failed"):
            lines.append(f"{s['name']} {s['status']}: {s['exit']}; start it with: "
                         f"msshop start {s['name']}")
    return lines


def _runs(service: ServiceStatus) -> str:
    """"runs (pid N) but " while its process is there: not answering is not down."""
    if service["health"] == "down":
        return ""
    return f"runs (pid {service['pid']}) but "


def _nats_words(status: StatusReport) -> str:
    """What a nats bus is made of: how many nodes, how many copies, who leads."""
    bus = status.get("bus")
    if bus is None or bus["backend"] != "nats":
        return ""
    leaders = {s["nats"]["leader"] for s in status["services"] if "nats" in s} - {""}
    nodes = len(bus["servers"])
    if nodes == 1:
        return f" (NATS JetStream, stream {bus['stream']})"
    words = f" (NATS, {nodes} nodes, stream on {bus['replicas']}"
    if leaders:
        words += ", led by " + "/".join(sorted(leaders)).replace("msshop-", "")
    return words + ")"


def abilities(service: ServiceStatus | Health) -> str | None:
    """What a running service can do when that is less than everything: e.g. the query
    service answers direct-call at once but refuses replicated reads while it catches up."""
    consumer = service.get("consumer")
    if consumer is None:
        return None
    if service.get("rebuilding"):
        return "answers from the old read model while a replay rebuilds it"
    target = consumer.get("catching_up_to")
    if target is not None:
        return (f"answers direct-call; replicated reads wait until it has caught up "
                f"({consumer['position']:,} of {target:,} applied)")
    return None


def status(out: Console, status: StatusReport) -> None:
    out.print(status_table(out, status))
    for service in status["services"]:
        if "command" in service:
            note(out, f"{service['name']} is your program: {shlex.join(service['command'])}")
        if line := trespass_line(service):
            note(out, line)
    for line in replication_lines(status):
        note(out, line)
    if isolation := isolation_line(status):
        note(out, isolation)


ISOLATION_WORDS = {"kernel": "held by the kernel (Landlock)",
                   "process": "checked in-process only", "none": "not held"}


def isolation_line(status: StatusReport) -> str | None:
    """Who keeps each service out of the others' files, in one line: grouped by who."""
    groups: dict[str, list[str]] = {}
    for s in status["services"]:
        if who := s.get("isolation"):
            groups.setdefault(who, []).append(s["name"])
    if not groups:
        return None
    if list(groups) == ["kernel"]:
        return "isolation: held by the kernel (Landlock) for every service"
    return "isolation: " + "; ".join(f"{ISOLATION_WORDS.get(who, who)} for {', '.join(names)}"
                                     for who, names in groups.items())


def trespass_line(service: ServiceStatus) -> str | None:
    """A program of your own's last trespass (msshop trespass), as its /health tells it."""
    told = service.get("trespass")
    if told is None or (last := told["last"]) is None:
        return None
    what = (f"refused ({last['error']})" if last["refused"]
            else "it read the file: the isolation rule did not hold")
    return (f"{service['name']}'s last trespass, into {last['into']}: {what}; "
            f"{told['refused']:,} of {told['tried']:,} refused")


class LivePrinter:
    """The foreground `msshop up` view: events and service logs scrolling above a live table.

    Refreshed by the supervisor's own loop (auto_refresh off): rich's refresh thread would
    be running when the supervisor forks a service, and a fork must not race a thread.
    """

    refresh_interval = 0.1

    def __init__(self, out: Console) -> None:
        self.out = out
        self.live: Live | None = None

    def _start_live(self) -> Live | None:
        """The table appears with the first refresh, once the sandbox is up."""
        if self.live is None and self.out.is_terminal:
            # no stdout/stderr redirection: forked services must not inherit rich's proxies
            self.live = Live(Text(""), console=self.out, auto_refresh=False, transient=True,
                             redirect_stdout=False, redirect_stderr=False)
            self.live.start()
        return self.live

    def event(self, message: str, level: str = "info") -> None:
        style = {"warning": "yellow", "error": "bold red"}.get(level, "")
        self.out.print(Text(clock() + " ") + Text("supervisor ", style="bold")
                       + data(message, style))
        self._refresh_live()

    def log_lines(self, service: str, lines: list[str]) -> None:
        for line in lines:
            self.out.print(service_name(f"{service:<9}") + data(" | " + line))
        self._refresh_live()

    def refresh(self, state: State, health: dict[str, dict[str, Any] | None]) -> None:
        live = self._start_live()
        if live is None:
            return
        rows: list[list[RenderableType]] = []
        for name, service in state.services.items():
            doc = health.get(name)
            rows.append([
                service_name(name),
                Text(service.status, style=STATUS_STYLES.get(service.status, "")),
                str(service.pid or "-"), str(service.port),
                Text(doc.get("status", "ok"), style="green" if doc.get("status", "ok") == "ok"
                     else "red") if doc else Text("-", style="red"),
                relative(service.db, state.sandbox),
                row_counts(doc.get("rows") if doc else None),
            ])
        table = fitted_table(self.out, SERVICE_COLUMNS, rows, title="Ctrl-C stops everything",
                             title_justify="left", title_style="dim")
        live.update(table, refresh=True)

    def _refresh_live(self) -> None:
        if self.live is not None:
            self.live.refresh()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
