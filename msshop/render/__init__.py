"""All of msshop's terminal output. The only module that imports rich.

Every renderer takes plain data (dicts, dataclasses) and a Console, so tests render into a
captured Console and compare strings. Colour is decoration only: every fact is in the text,
so output piped or under NO_COLOR (which rich honours) reads the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from msshop.instruments.seed import SeedReport
from msshop.runtime.orchestrator.state import State

SERVICE_STYLES = {"users": "cyan", "products": "magenta", "orders": "yellow",
                  "query": "green", "bus": "blue", "supervisor": "bold"}
STATUS_STYLES = {"running": "green", "starting": "yellow", "stopping": "yellow",
                 "stopped": "dim", "crashed": "bold red", "failed": "bold red"}


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False)


def error(message: str) -> None:
    console(stderr=True).print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)


def note(out: Console, message: str) -> None:
    out.print(Text(message), soft_wrap=True)


def service_name(name: str) -> Text:
    return Text(name, style=SERVICE_STYLES.get(name, ""))


# --- sandbox ---------------------------------------------------------------------------------


def ready(out: Console, state: State, seconds: float | None = None) -> None:
    took = f" in {seconds * 1000:.0f} ms" if seconds is not None else ""
    note(out, f"sandbox {state.sandbox} is up{took} (supervisor pid {state.supervisor_pid}, "
              f"{state.mode})")
    for name, service in state.services.items():
        line = Text("  ") + service_name(f"{name:<9}") + Text(
            f" {service.url:<23} pid {service.pid:<7} {_relative(service.db, state.sandbox)}")
        out.print(line, soft_wrap=True)


def stopped(out: Console, state: State) -> None:
    note(out, f"sandbox {state.sandbox} is down: stopped " + ", ".join(state.services)
         + f" and the supervisor (pid {state.supervisor_pid})")


def status_table(status: dict[str, Any]) -> Table:
    table = Table(title=f"sandbox {status['sandbox']} ({status['mode']}, supervisor pid "
                        f"{status['supervisor']['pid']})", title_justify="left",
                  box=None, pad_edge=False)
    for column in ("service", "status", "pid", "port", "health", "database", "rows"):
        table.add_column(column, no_wrap=column != "rows")
    for service in status["services"]:
        rows = service["rows"]
        table.add_row(
            service_name(service["name"]),
            Text(service["status"], style=STATUS_STYLES.get(service["status"], "")),
            str(service["pid"] or "-"),
            str(service["port"]),
            Text(service["health"], style="green" if service["health"] == "ok" else "red"),
            _relative(service["db"], status["sandbox"]),
            ", ".join(f"{k.removesuffix('_replica')} {v:,}" for k, v in rows.items())
            if rows else "-",
        )
    return table


def replication_lines(status: dict[str, Any]) -> list[str]:
    """Outbox backlogs, the bus's head and the consumer's position, in words."""
    by_name = {s["name"]: s for s in status["services"]}
    lines = []
    outboxes = [f"{name} {s['outbox']['pending']:,}" for name, s in by_name.items()
                if "outbox" in s]
    if outboxes:
        lines.append("outbox backlog: " + ", ".join(outboxes))
    for name, s in by_name.items():
        if "outbox" in s and s["outbox"]["error"]:
            lines.append(f"  the {name} relay is retrying: {s['outbox']['error']}")
    if "head" in by_name.get("bus", {}):
        lines.append(f"bus: head at position {by_name['bus']['head']:,}")
    consumer = by_name.get("query", {}).get("consumer")
    if consumer:
        state = "caught up" if consumer["caught_up"] else f"{consumer['behind']:,} behind"
        lines.append(f"query: read model at position {consumer['position']:,} of "
                     f"{consumer['bus_head']:,} ({state}), {consumer['dead_letters']:,} "
                     "dead letter(s)")
        if consumer["bus_error"]:
            lines.append(f"  its consumer is retrying: {consumer['bus_error']}")
    for s in status["services"]:
        if s.get("chaos"):
            c = s["chaos"]
            lines.append(f"chaos in {s['name']}: +{c['latency_ms']:g} ms (+0..{c['jitter_ms']:g}"
                         f" ms), {c['error_rate']:.0%} answered 503")
        if s["exit"] and s["status"] in ("crashed", "failed"):
            lines.append(f"{s['name']} {s['status']}: {s['exit']}; start it with: "
                         f"msshop start {s['name']}")
    return lines


def _relative(path: str, root: str) -> str:
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def status(out: Console, status: dict[str, Any]) -> None:
    out.print(status_table(status))
    for line in replication_lines(status):
        note(out, line)


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
        self.out.print(Text(_clock() + " ") + Text("supervisor ", style="bold")
                       + Text(message, style=style))
        self._refresh_live()

    def log_lines(self, service: str, lines: list[str]) -> None:
        for line in lines:
            self.out.print(service_name(f"{service:<9}") + Text(" | " + line))
        self._refresh_live()

    def refresh(self, state: State, health: dict[str, dict[str, Any] | None]) -> None:
        live = self._start_live()
        if live is None:
            return
        table = Table(box=None, pad_edge=False, title="Ctrl-C stops everything",
                      title_justify="left", title_style="dim")
        for column in ("service", "status", "pid", "port", "health", "rows", "database"):
            table.add_column(column, no_wrap=True)
        for name, service in state.services.items():
            doc = health.get(name)
            rows = doc.get("rows") if doc else None
            table.add_row(
                service_name(name),
                Text(service.status, style=STATUS_STYLES.get(service.status, "")),
                str(service.pid or "-"), str(service.port),
                Text("ok", style="green") if doc else Text("-", style="red"),
                ", ".join(f"{k} {v:,}" for k, v in rows.items()) if rows else "-",
                _relative(service.db, state.sandbox),
            )
        live.update(table, refresh=True)

    def _refresh_live(self) -> None:
        if self.live is not None:
            self.live.refresh()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _clock() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"


def log_line(out: Console, service: str, line: str) -> None:
    """A log line as written (time, service, level, message), the service name coloured."""
    text = Text(line.rstrip("\n"))
    start = line.find(service)
    if start >= 0:
        text.stylize(SERVICE_STYLES.get(service, ""), start, start + len(service))
    out.print(text, soft_wrap=True)


# --- the shop --------------------------------------------------------------------------------


def user(out: Console, user: dict[str, Any]) -> None:
    note(out, f"user {user['id']}: {user['name']} <{user['email']}>")


def products(out: Console, page: dict[str, Any]) -> None:
    table = Table(box=None, pad_edge=False)
    table.add_column("id", justify="right")
    table.add_column("title")
    table.add_column("price", justify="right")
    table.add_column("stock", justify="right")
    table.add_column("sku", style="dim")
    for product in page["products"]:
        table.add_row(str(product["id"]), product["title"], f"{product['price']:.2f}",
                      str(product["stock"]), product["sku"] or "")
    out.print(table)
    if page.get("next_after"):
        out.print(Text(f"more: msshop products --after {page['next_after']}", style="dim"))


def order(out: Console, order: dict[str, Any], created: bool) -> None:
    verb = "placed" if created else "already placed (same request id)"
    note(out, f"order {order['id']} {verb}: user {order['user_id']} bought "
              f"{order['quantity']} x product {order['product_id']} at "
              f"{order['unit_price']:.2f} = {order['total']:.2f}")
    event = order.get("event")
    if event and event.get("position"):
        note(out, f"event {event['type']} is at bus position {event['position']}; read your "
                  f"write with: msshop query --user {order['user_id']} --after "
                  f"{event['position']}")
    elif event:
        note(out, f"event {event['type']} waits in the orders outbox (the bus has not "
                  "stored it yet); see: msshop status")


def orders(out: Console, orders: list[dict[str, Any]], total: int) -> None:
    table = Table(box=None, pad_edge=False)
    for column, justify in (("order", "right"), ("product", "right"), ("qty", "right"),
                            ("unit price", "right"), ("total", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for o in orders:
        table.add_row(str(o["id"]), str(o["product_id"]), str(o["quantity"]),
                      f"{o['unit_price']:.2f}", f"{o['total']:.2f}")
    out.print(table)
    if total > len(orders):
        out.print(Text(f"... and {total - len(orders)} more", style="dim"))


class DemoStage:
    """A demo on a terminal: its title, each step's narration and command, the command's
    output as it printed it, and the wait for Enter (msshop.instruments.demo.Stage)."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.width = out.width
        self.colour = out.color_system is not None and not out.no_color

    def title(self, title: str, summary: str, sandbox: Path) -> None:
        self.out.print(Text(title, style="bold"))
        self.out.print(Text(" ".join(summary.split())))
        self.out.print(Text(f"(a sandbox of its own: {sandbox}, on free ports; removed at the "
                            "end)", style="dim"), soft_wrap=True)

    def step(self, narration: str, command: str) -> None:
        """What the step shows, and the command the audience can type themselves."""
        self.out.print()
        self.out.print(Text(narration, style="bold"))
        for line in command.splitlines():
            self.out.print(Text("$ ", style="dim") + Text(line, style="cyan"), soft_wrap=True)

    def output(self, text: str) -> None:
        self.out.file.write(text if text.endswith("\n") or not text else text + "\n")
        self.out.file.flush()

    def wait(self) -> None:
        self.out.print(Text("(Enter for the next step)", style="dim"), end="")
        try:
            input()
        except EOFError:
            self.out.print()


# --- seeding ---------------------------------------------------------------------------------


@contextmanager
def seed_progress(out: Console) -> Iterator[Callable[[str, int, int], None]]:
    progress = Progress(TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=out, transient=False,
                        disable=not out.is_terminal)
    tasks: dict[str, Any] = {}

    def update(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = progress.add_task(what, total=total)
        progress.update(tasks[what], completed=done)

    with progress:
        yield update


def seed_report(out: Console, report: SeedReport) -> None:
    for what in ("users", "products", "orders"):
        seconds = report.seconds[what]
        out.print(Text(
            f"{what:<9} {report.created[what]:>8,} created, {report.existing[what]:>8,} "
            f"already there, {seconds:6.2f} s ({report.rate(what):,.0f}/s)"))



# --- the question: answers and traces --------------------------------------------------------


def answer(out: Console, asked: Any) -> None:
    """A user-orders answer: the user, their orders with product details, freshness."""
    data = asked.answer
    user = data["user"]
    how = asked.strategy + (f" ({asked.fanout})" if asked.fanout else "")
    if asked.strategy == "monolith":
        out.print(Text(f"! {data['label']}", style="bold yellow"), soft_wrap=True)
    who = f"{user['name']} <{user['email']}>" if user["name"] else "(name unavailable)"
    note(out, f"user {user['id']}: {who}, {len(data['orders'])} orders, by {how} in "
              f"{asked.latency_ms:.2f} ms")
    for gap in data.get("missing", []):
        out.print(Text(f"partial: {gap['missing']} missing, {gap['service']} failed "
                       f"({gap['failure']}): {gap['error']}", style="yellow"), soft_wrap=True)
    table = Table(box=None, pad_edge=False)
    for column, justify in (("order", "right"), ("product", "right"), ("title", "left"),
                            ("qty", "right"), ("unit price", "right"), ("total", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    shown = data["orders"][:20]
    for o in shown:
        title = Text(o["title"]) if o["title"] is not None else Text(
            "(unavailable)" if data.get("missing") else "(not replicated yet)", style="yellow")
        table.add_row(str(o["order_id"]), str(o["product_id"]), title, str(o["quantity"]),
                      f"{o['unit_price']:.2f}", f"{o['total']:.2f}")
    if shown:
        out.print(table)
    if len(data["orders"]) > len(shown):
        out.print(Text(f"... and {len(data['orders']) - len(shown)} more (--json for all)",
                       style="dim"))
    out.print(Text("freshness: ", style="bold") + Text(freshness(data.get("freshness"))),
              soft_wrap=True)


def freshness(fresh: dict[str, Any] | None) -> str:
    if not fresh or fresh.get("live"):
        return "live: read from the owning services just now"
    head_age = fresh.get("head_seen_ms_ago")
    if fresh.get("bus_error"):
        seen = f", {head_age:,.0f} ms ago" if head_age is not None else ""
        return (f"read model at bus position {fresh['position']:,}; the bus is unreachable "
                f"({fresh['bus_error']}), its head was {fresh['bus_head']:,} when last "
                f"seen{seen}: newer writes may be missing")
    if fresh.get("listening"):
        seen = "listening to the bus"
    elif head_age is not None:
        seen = f"bus head seen {head_age:.0f} ms ago"
    else:
        seen = "bus not reached yet"
    state = "caught up" if fresh["caught_up"] else f"{fresh['behind']:,} event(s) behind"
    return (f"read model at bus position {fresh['position']:,} of {fresh['bus_head']:,} "
            f"({state}; {seen})")


def _short(values: Any, most: int = 5) -> str:
    if not isinstance(values, list):
        return str(values)
    shown = ", ".join(str(v) for v in values[:most])
    return f"[{shown}{f', … {len(values)} in all' if len(values) > most else ''}]"


def _span_label(span: dict[str, Any]) -> Text:
    attributes = span.get("attributes") or {}
    label = service_name(f"{span['service']:<8}") + Text(" " + span["name"])
    label += Text(f"  {span['duration_ms']:.2f} ms", style="dim")
    if span.get("status") == "error":
        label += Text(f"  {attributes.get('msshop.failure') or 'error'}", style="bold red")
    facts = []
    if "db.system" in attributes:
        facts.append(f"{attributes.get('db.name')} · {attributes.get('db.operation')} "
                     f"{attributes.get('db.sql.table')}")
        if "msshop.keys" in attributes:
            facts.append(f"keys {_short(attributes['msshop.keys'])}")
        if "msshop.rows" in attributes:
            facts.append(f"{attributes['msshop.rows']} rows")
    elif "peer.service" in attributes and span.get("kind") == "client":
        status = attributes.get("http.response.status_code")
        facts.append(f"→ {attributes['peer.service']}" + (f" ({status})" if status else ""))
    if facts:
        label += Text("\n  " + "  ".join(facts), style="dim")
    if attributes.get("msshop.breaks_encapsulation"):
        label += Text("\n  breaks encapsulation: one process opened every service's file",
                      style="yellow")
    if "msshop.events.kinds" in attributes:
        kinds = [f"{n} {kind}" for kind, n in attributes["msshop.events.kinds"].items()]
        named = [f"{kind} from {source} @ {position}"
                 for kind, source, position in attributes.get("msshop.events", [])[:3]]
        label += Text(f"\n  rows from {attributes['msshop.events.count']} event(s): "
                      + ", ".join(kinds) + (f"; e.g. {'; '.join(named)}" if named else ""),
                      style="dim")
    return label


def trace(out: Console, spans: list[dict[str, Any]], trace_id: str) -> None:
    """The call tree: which service touched which data, and how long each hop took."""
    from rich.tree import Tree

    from msshop.instruments.traces.shape import summary, tree

    shape = summary(spans)
    out.print(Text(f"trace {trace_id}", style="bold") + Text(
        f"  services: {', '.join(shape['services'])}", style="dim"), soft_wrap=True)

    def add(branch: Tree, node: Any) -> None:
        child = branch.add(_span_label(node.span))
        for grandchild in node.children:
            add(child, grandchild)

    roots = tree(spans)
    top = Tree(_span_label(roots[0].span)) if len(roots) == 1 else Tree(Text("(trace)"))
    for node in roots[0].children if len(roots) == 1 else roots:
        add(top, node)
    out.print(top)


def compare(out: Console, user_id: int, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"user-orders for user {user_id}, every strategy", box=None,
                  pad_edge=False, title_justify="left")
    for column, justify in (("strategy", "left"), ("answer", "left"), ("ms", "right"),
                            ("stages", "right"), ("services", "left"), ("rows", "right"),
                            ("freshness", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    problems: list[str] = []
    for row in rows:
        if row["error"]:
            table.add_row(row["strategy"], Text("failed", style="bold red"), "-", "-", "-",
                          "-", "-")
            problems.append(f"{row['strategy']}: {row['error']}")
            continue
        if row["strategy"] == "monolith":
            verdict = Text("the truth")
        elif row["equal"]:
            verdict = Text("= monolith", style="green")
        else:
            verdict = Text("differs", style="bold red")
            problems.extend(f"{row['strategy']}: {d}" for d in row["differences"])
        fresh = row["freshness"] or {}
        table.add_row(row["strategy"], verdict, f"{row['latency_ms']:.2f}",
                      str(row["sequential_hops"]),
                      " ".join(s for s in row["services"] if s != "cli") or "cli only",
                      str(row["rows_read"]),
                      "live" if fresh.get("live") else
                      ("caught up" if fresh.get("caught_up") else f"{fresh.get('behind')} "
                                                                   "behind"))
    out.print(table)
    for row in rows:
        if not row["error"]:
            dbs = "; ".join(f"{service}: {', '.join(Path(d).name for d in files)}"
                            for service, files in row["databases"].items() if files)
            note(out, f"{row['strategy']} touched {dbs or 'no database'}")
    for problem in problems:
        out.print(Text(problem, style="red"), soft_wrap=True)


def verify(out: Console, report: dict[str, Any]) -> None:
    wrong = report["differences"]
    if not wrong:
        note(out, f"verified: the replicated read model equals the monolith join for all "
                  f"{report['users']:,} users ({report['orders']:,} orders) at bus position "
                  f"{report['position']:,}")
        return
    note(out, f"{len(wrong):,} of {report['users']:,} users differ between the replicated "
              f"read model and the monolith join (bus position {report['position']:,}):")
    for user_id, found in list(wrong.items())[:20]:
        note(out, f"  user {user_id}: " + "; ".join(found))


def event_line(out: Console, position: int, event: dict[str, Any]) -> None:
    data = event.get("data") if isinstance(event, dict) else None
    summary_text = ", ".join(f"{k}={v}" for k, v in list((data or {}).items())[:4])
    text = Text(f"{position:>7} ") + Text(f"{event.get('type', '?'):<15}", style="bold") + Text(
        f" {event.get('source', '?'):<9}", style=SERVICE_STYLES.get(event.get("source", ""), ""))
    text += Text(f" {event.get('aggregate_type', '?')} {event.get('aggregate_id', '?')} "
                 f"v{event.get('aggregate_version', '?')}  {summary_text}")
    out.print(text, soft_wrap=True)


def bench(out: Console, report: dict[str, Any]) -> None:
    latency = report["latency_ms"]
    floor = latency["floor"]["p50"]
    table = Table(title="latency as a caller of the query service sees it (user with 10 orders)",
                  box=None, pad_edge=False, title_justify="left")
    for column in ("endpoint", "p50 ms", "p99 ms", "p50 / floor"):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    for name, figures in latency.items():
        table.add_row(name, f"{figures['p50']:.3f}", f"{figures['p99']:.3f}",
                      f"{figures['p50'] / floor:.2f}x")
    out.print(table)
    scaling = Table(title="by orders per user: p50 ms (sequential network stages)", box=None,
                    pad_edge=False, title_justify="left")
    scaling.add_column("orders", justify="right")
    scaling.add_column("replicated", justify="right")
    scaling.add_column("direct-call", justify="right")
    for size, figures in report["by_orders"].items():
        scaling.add_row(str(size), *(f"{figures[s]['p50']:.3f} ({figures[s]['stages']})"
                                     for s in ("replicated", "direct-call")))
    out.print(scaling)
    lag = report["lag_ms"]
    note(out, f"purchases: {report['purchases']['count']:,} from one client at "
              f"{report['purchases']['per_second']:,.0f}/s; replication lag p50 "
              f"{lag['p50']:.2f} ms, p99 {lag['p99']:.2f} ms")
    sustained, paced = report["sustained"], report["paced"]
    note(out, f"sustained: {sustained['per_second']:,.0f} purchases/s from "
              f"{sustained['clients']} clients ({sustained['failed']:,} refused); replication "
              f"lag p50 {sustained['lag_ms']['p50']:.2f} ms, p99 "
              f"{sustained['lag_ms']['p99']:.2f} ms")
    note(out, f"paced at {paced['target_per_second']:,.0f}/s: {paced['per_second']:,.0f}/s "
              f"achieved; replication lag p50 {paced['lag_ms']['p50']:.2f} ms, p99 "
              f"{paced['lag_ms']['p99']:.2f} ms")
    note(out, f"rebuild: {report['rebuild']['events']:,} events in "
              f"{report['rebuild']['seconds']:.2f} s ({report['rebuild']['per_second']:,.0f}"
              " events/s)")
    note(out, f"up: {report['up_ms']:.0f} ms from `up` to all healthy (fork to healthy "
              f"{report['fork_to_healthy_ms']:.0f} ms at most)")


def dead_letters(out: Console, page: dict[str, Any]) -> None:
    if not page["count"]:
        note(out, "no dead letters: the read model applied every event it was given")
        return
    note(out, f"{page['count']:,} dead letter(s); newest first:")
    for item in page["dead_letters"]:
        note(out, f"{item['position']:>7} {item['type'] or '?':<15} {item['reason']}")


def replayed(out: Console, result: dict[str, Any]) -> None:
    note(out, f"rebuilt the read model from position 0: {result['events']:,} events in "
              f"{result['seconds']:.2f} s ({result['per_second']:,.0f} events/s), swapped in at "
              f"position {result['position']:,} (it was at {result['position_before']:,}), "
              f"{result['dead_letters']:,} dead letter(s)")
