"""user-orders answers: one answer with its freshness and trace, every strategy compared,
verify."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from msshop.contracts.strategies import ReadStrategy
from msshop.render.console import data as escaped, note
from msshop.render.tables import Column, fitted_table
from msshop.render.traces import timeline, trace_views

if TYPE_CHECKING:  # types only: `msshop status` need not import the instruments
    from msshop.contracts.answers import Freshness, OrderLine
    from msshop.instruments.asking import Asked
    from msshop.instruments.checking import Compared, Verified


def answer(out: Console, asked: Asked) -> None:
    """A user-orders answer: the user, their orders with product details, freshness."""
    data = asked.answer
    user = data["user"]
    how = asked.strategy + (f" ({asked.fanout})" if asked.fanout else "")
    if "label" in data:  # the monolith says what it breaks
        note(out, f"! {data['label']}", style="bold yellow")
    who = f"{user['name']} <{user['email']}>" if user["name"] else "(name unavailable)"
    note(out, f"user {user['id']}: {who}, {len(data['orders'])} orders, by {how} in "
              f"{asked.latency_ms:.2f} ms")
    missing = data.get("missing", [])
    for gap in missing:
        note(out, f"partial: {gap['missing']} missing, {gap['service']} failed "
                  f"({gap['failure']}): {gap['error']}", style="yellow")
    table = Table(box=None, pad_edge=False)
    for column, justify in (("order", "right"), ("product", "right"), ("title", "left"),
                            ("qty", "right"), ("unit price", "right"), ("total", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("status")
    shown = data["orders"][:20]
    for o in shown:
        title = escaped(o["title"]) if o["title"] is not None else Text(
            _untitled(asked.strategy, bool(missing)), style="yellow")
        table.add_row(str(o["order_id"]), str(o["product_id"]), title, str(o["quantity"]),
                      f"{o['unit_price']:.2f}", f"{o['total']:.2f}", status(o))
    if shown:
        out.print(table)
    for o in shown:  # a reason is a sentence: one line each under the table, cut to fit
        if o.get("status") == "rejected":
            out.print(escaped(f"order {o['order_id']} rejected: "
                              f"{o.get('reason') or 'no reason given'}", style="red"),
                      no_wrap=True, overflow="ellipsis", crop=True)
    if len(data["orders"]) > len(shown):
        out.print(Text(f"... and {len(data['orders']) - len(shown)} more (--json for all)",
                       style="dim"))
    note(out, f"freshness: {freshness(data.get('freshness'), asked.strategy)}")


STATUS_STYLES = {"pending": "yellow", "rejected": "red"}


def status(order: OrderLine) -> Text:
    """An order's status for a table cell: pending (a saga's, not decided yet), confirmed
    or rejected (its reason is on a line of its own under the table)."""
    said = order.get("status", "confirmed")  # an answer of a program that does not say
    return Text(said, style=STATUS_STYLES.get(said, ""))


def _untitled(strategy: str, partial: bool) -> str:
    """Why an order has no title: products failed (partial), there is no such product (the
    monolith reads products' own file: a saga's order of one is rejected), or the read
    model has not had its event yet."""
    if partial:
        return "(unavailable)"
    return "(no such product)" if strategy == ReadStrategy.MONOLITH else "(not replicated yet)"


def answer_with_trace(out: Console, asked: Asked, view: str = "both") -> None:
    """`msshop query`: the answer, then the trace of who touched what (a tree, a timeline
    or both)."""
    answer(out, asked)
    out.print()
    trace_views(out, asked.spans, asked.trace_id, view)
    if asked.unsaved:
        note(out, f"warning: {asked.unsaved}", style="yellow")


def freshness(fresh: Freshness | None, strategy: str = ReadStrategy.DIRECT_CALL) -> str:
    if strategy == ReadStrategy.MONOLITH:
        return "live: read from every service's database file just now"
    if not fresh or "live" in fresh:
        return "live: read from the owning services just now"
    if fresh.get("log_problem"):
        return f"read model at bus position {fresh['position']:,}; {fresh['log_problem']}"
    head_age = fresh["head_seen_ms_ago"]
    if fresh["bus_error"]:
        seen = f", {head_age:,.0f} ms ago" if head_age is not None else ""
        return (f"read model at bus position {fresh['position']:,}; the bus is unreachable "
                f"({fresh['bus_error']}), its head was {fresh['bus_head']:,} when last "
                f"seen{seen}: newer writes may be missing")
    if fresh["listening"]:
        seen = "listening to the bus"
    elif head_age is not None:
        seen = f"bus head seen {head_age:.0f} ms ago"
    else:
        seen = "bus not reached yet"
    state = "caught up" if fresh["caught_up"] else f"{fresh['behind']:,} event(s) behind"
    return (f"read model at bus position {fresh['position']:,} of {fresh['bus_head']:,} "
            f"({state}; {seen})")


def _freshness_word(fresh: Freshness | None) -> str:
    """Freshness in one word or two, for a table cell."""
    if fresh is None:
        return "None behind"
    if "live" in fresh:
        return "live"
    return "caught up" if fresh["caught_up"] else f"{fresh['behind']} behind"


# The services each strategy reached are also in the "touched" lines under the table.
COMPARE_COLUMNS = (Column("strategy"), Column("answer"), Column("ms", "right"),
                   Column("stages", "right"), Column("services", drop=1),
                   Column("rows", "right"), Column("freshness"))


def compare(out: Console, user_id: int, rows: list[Compared]) -> None:
    table_rows: list[list[RenderableType]] = []
    problems: list[str] = []
    notes: list[str] = []  # orders in flight: not wrong, seen at another moment
    for row in rows:
        if row.error:
            table_rows.append([row.strategy, Text("failed", style="bold red"), "-", "-", "-",
                               "-", "-"])
            problems.append(f"{row.strategy}: {row.error}")
            continue
        if row.strategy == ReadStrategy.MONOLITH:
            verdict = Text("the truth")
        elif row.equal:
            verdict = Text("= monolith", style="green")
        elif not row.differences:  # only a saga's orders seen at another moment
            verdict = Text("behind" if row.behind else "newer", style="yellow")
        else:
            verdict = Text("differs", style="bold red")
            problems.extend(f"{row.strategy}: {d}" for d in row.differences)
        notes.extend(f"{row.strategy}: {said}" for said in row.in_flight)
        table_rows.append([row.strategy, verdict, f"{row.latency_ms:.2f}",
                           str(row.sequential_hops),
                           " ".join(s for s in row.services if s != "cli") or "cli only",
                           str(row.rows_read), _freshness_word(row.freshness)])
    table = fitted_table(out, COMPARE_COLUMNS, table_rows, title_justify="left",
                         title=f"user-orders for user {user_id}, every strategy")
    out.print(table)
    for row in rows:
        if not row.error:
            dbs = "; ".join(f"{service}: {', '.join(Path(d).name for d in files)}"
                            for service, files in (row.databases or {}).items() if files)
            note(out, f"{row.strategy} touched {dbs or 'no database'}")
    for problem in problems:
        note(out, problem, style="red")
    for said in notes:
        note(out, said, style="yellow")
    for row in rows:  # one small timeline each: what ran at once, what one after another
        if row.spans:
            out.print()
            timeline(out, list(row.spans), title=f"{row.strategy}, {row.latency_ms:.2f} ms",
                     depth=2)  # the CLI's call, the query service's, and what it called


def invariant(out: Console, breaches: tuple[str, ...]) -> None:
    """Stock and credit across services, against the monolith's view of the files."""
    if not breaches:
        note(out, "verified: every product's stock and every user's credit equal what was "
                  "given minus what confirmed orders hold, each taken once; no rejected "
                  "order holds anything, and none is pending")
        return
    note(out, "the invariant is broken (stock and credit, from the three files):")
    for line in breaches:
        note(out, f"  {line}")


def verify(out: Console, report: Verified) -> None:
    """The read model against the monolith join, then the invariant across services."""
    wrong = report.differences
    if not wrong:
        note(out, f"verified: the replicated read model equals the monolith join for all "
                  f"{report.users:,} users ({report.orders:,} orders) at bus position "
                  f"{report.position:,}")
        invariant(out, report.invariant)
        return
    note(out, f"{len(wrong):,} of {report.users:,} users differ between the replicated "
              f"read model and the monolith join (bus position {report.position:,}):")
    for user_id, found in list(wrong.items())[:20]:
        note(out, f"  user {user_id}: " + "; ".join(found))
    invariant(out, report.invariant)
