"""A trace as a tree: which service touched which data, and how long each hop took."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from msshop.render.console import SERVICE_STYLES, clean, data, note, service_name

if TYPE_CHECKING:
    from msshop.contracts.outcomes import ListedTrace
    from msshop.contracts.spans import Span
    from msshop.instruments.journey import Journey
    from msshop.instruments.traces.shape import Node


def _short(values: Any, most: int = 5) -> str:
    if not isinstance(values, list):
        return str(values)
    shown = ", ".join(str(v) for v in values[:most])
    return f"[{shown}{f', … {len(values)} in all' if len(values) > most else ''}]"


def _span_label(span: Span) -> RenderableType:
    """The span's service, name and duration, and under them, indented, what it touched;
    a detail line that wraps keeps its indent."""
    attributes = span.get("attributes") or {}
    label = service_name(clean(f"{span['service']:<8}")) + data(" " + str(span["name"]))
    label += Text(f"  {span['duration_ms']:.2f} ms", style="dim")
    if span.get("status") == "error":
        label += data(f"  {attributes.get('msshop.failure') or 'error'}", "bold red")
    facts = []
    if "db.system" in attributes:
        facts.append(f"{attributes.get('db.name')} · {attributes.get('db.operation')}"
                     + (f" {attributes['db.sql.table']}" if attributes.get("db.sql.table")
                        else ""))
        if "msshop.keys" in attributes:
            facts.append(f"keys {_short(attributes['msshop.keys'])}")
        if "msshop.rows" in attributes:
            facts.append(f"{attributes['msshop.rows']} rows")
        if "msshop.kept_at" in attributes:  # read from the file then, kept since
            facts.append(f"kept since position {attributes['msshop.kept_at']}")
    elif "peer.service" in attributes and span.get("kind") == "client":
        status = attributes.get("http.response.status_code")
        facts.append(f"→ {attributes['peer.service']}" + (f" ({status})" if status else ""))
    if "msshop.position" in attributes:  # a followed write's event on its way
        facts.append(f"bus position {attributes['msshop.position']}")
        if "msshop.lag_ms" in attributes:
            facts.append(f"{attributes['msshop.lag_ms']:.2f} ms after the commit")
    details: list[Text] = []
    if facts:
        details.append(data("  ".join(facts), "dim"))
    if attributes.get("msshop.breaks_encapsulation"):
        details.append(Text("breaks encapsulation: one process opened every service's file",
                            style="yellow"))
    if "msshop.events.kinds" in attributes:
        kinds = [f"{n} {kind}" for kind, n in attributes["msshop.events.kinds"].items()]
        named = [f"{kind} from {source} @ {position}"
                 for kind, source, position in attributes.get("msshop.events", [])[:3]]
        details.append(data(f"rows from {attributes['msshop.events.count']} event(s): "
                            + ", ".join(kinds) + (f"; e.g. {'; '.join(named)}" if named else ""),
                            style="dim"))
    if not details:
        return label
    return Group(label, *(Padding(detail, (0, 0, 0, 2)) for detail in details))


def trace(out: Console, spans: list[Span], trace_id: str) -> None:
    """The call tree: which service touched which data, and how long each hop took."""
    from msshop.instruments.traces.shape import summary, tree

    shape = summary(spans)
    out.print(Text(f"trace {trace_id}", style="bold"))
    note(out, f"services: {', '.join(shape['services'])}", style="dim")

    def add(branch: Tree, node: Node) -> None:
        child = branch.add(_span_label(node.span))
        for grandchild in node.children:
            add(child, grandchild)

    roots = tree(spans)
    top = Tree(_span_label(roots[0].span)) if len(roots) == 1 else Tree(Text("(trace)"))
    for node in roots[0].children if len(roots) == 1 else roots:
        add(top, node)
    out.print(top)


VIEWS = ("both", "tree", "timeline")
TIMELINE_MAX = 100  # columns a timeline uses at most (80 fit: the label and figure shrink)
LABEL, FIGURE = 32, 9  # columns for a row's label and its duration


def trace_views(out: Console, spans: list[Span], trace_id: str, view: str = "both") -> None:
    """A trace as asked: the tree, the timeline, or the tree and the timeline under it."""
    if view in ("both", "tree"):
        trace(out, spans, trace_id)
    if view == "both":
        out.print()
    if view in ("both", "timeline"):
        timeline(out, spans, trace_id if view == "timeline" else None)


def timeline(out: Console, spans: list[Span], trace_id: str | None = None,
             title: str | None = None, depth: int | None = None) -> None:
    """Each span a bar on one time axis: what ran at once, what ran one after another
    (`depth`: only the spans that deep in the call tree, for a small one)."""
    from msshop.instruments.traces.timeline import timeline as geometry

    width = min(out.width, TIMELINE_MAX)
    columns = max(10, width - LABEL - FIGURE - 2)
    drawn = geometry(spans, columns)
    heading = title or (f"trace {trace_id}" if trace_id else "timeline")
    out.print(Text(heading, style="bold") + Text(
        f"  one column = {drawn.ms_per_column:.3f} ms", style="dim"), soft_wrap=True)
    for bar in drawn.bars:
        if depth is not None and bar.depth > depth:
            continue
        span = bar.span
        style = SERVICE_STYLES.get(str(span["service"]), "")
        label = _fit(" " * min(bar.depth, 4) + f"{span['service']:<8} " + _what(span), LABEL)
        row = Text(label.ljust(LABEL) + " ", style="")
        row.stylize(style, 0, len(label))
        row += Text(" " * bar.offset)
        row += Text("█" * bar.width, style="red" if span.get("status") == "error" else style)
        row += Text(" " * (columns - bar.offset - bar.width))
        row += Text(f" {span['duration_ms']:>{FIGURE - 3}.2f} ms", style="dim")
        out.print(row, soft_wrap=True, no_wrap=True)
    axis = f"0 ms{f'{drawn.total_ms:.2f} ms':>{columns - 4}}"
    out.print(Text(" " * (LABEL + 1) + axis, style="dim"), soft_wrap=True)


def _what(span: Span) -> str:
    """A row's label after the service: the file and statement, the call, or the name."""
    attributes = span.get("attributes") or {}
    if "msshop.position" in attributes:  # a followed write's event: publish, append, apply
        verb = str(span["name"]).split(" ", 1)[0]  # the event's type is in the tree
        return f"{clean(verb)} @{attributes['msshop.position']}"
    if "db.system" in attributes:
        rows = attributes.get("msshop.rows")
        return (f"{attributes.get('db.name')} {attributes.get('db.operation')}"
                + (f" {rows} row{'s' if rows != 1 else ''}" if isinstance(rows, int) else ""))
    if "peer.service" in attributes and span.get("kind") == "client":
        return f"→ {attributes['peer.service']}"
    return clean(span["name"])


def _fit(text: str, width: int) -> str:
    text = clean(text)
    return text if len(text) <= width else text[:width - 1] + "…"


def journey(out: Console, followed: Journey, view: str = "both") -> None:
    """A write's trace, to the read model: the request, then the relay, bus and apply."""
    out.print()
    trace_views(out, followed.spans, followed.trace_id, view)
    if followed.applied and followed.lag_ms is not None:
        note(out, f"replicated: committed at the source, applied in the read model "
                  f"{followed.lag_ms:.2f} ms later (the replication lag)")
    elif followed.applied:  # a program of your own that records no apply span
        note(out, "replicated: applied in the read model; its lag is not in the trace (the "
                  "query service records no apply span)")
    else:
        note(out, "not in the read model yet (is the bus or the query service down? see: "
                  "msshop status); the trace shows how far the write got")
    if followed.unsaved:
        note(out, f"warning: {followed.unsaved}", style="yellow")


def trace_list(out: Console, found: list[ListedTrace]) -> None:
    """`msshop traces`: one line each, newest first."""
    import time

    if not found:
        note(out, "no stored traces match; ask a question first, e.g.: msshop query --user 1")
        return
    table = Table(box=None, pad_edge=False)
    for column, justify in (("trace", "left"), ("at", "left"), ("user", "right"),
                            ("strategy", "left"), ("ms", "right"),
                            ("services but query", "left")):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for line in found:
        table.add_row(line["trace_id"][:12],
                      time.strftime("%H:%M:%S", time.localtime(line["started_at"])),
                      str(line["user_id"]), line["strategy"].replace(" (batched)", ""),
                      f"{line['duration_ms']:.2f}" if line["ok"]
                      else Text("failed", style="red"),
                      ",".join(s for s in line["services"] if s != "query") or "-")
    out.print(table)
    note(out, "show one with: msshop trace " + found[0]["trace_id"][:12])


def text_document(text: str) -> None:
    """An export (OTLP/JSON, a Mermaid diagram), as is, for a file or a pipe."""
    print(text)
