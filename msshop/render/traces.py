"""A trace as a tree: which service touched which data, and how long each hop took."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from msshop.render.console import clean, data, service_name

if TYPE_CHECKING:
    from msshop.contracts.spans import Span
    from msshop.instruments.traces.shape import Node


def _short(values: Any, most: int = 5) -> str:
    if not isinstance(values, list):
        return str(values)
    shown = ", ".join(str(v) for v in values[:most])
    return f"[{shown}{f', … {len(values)} in all' if len(values) > most else ''}]"


def _span_label(span: Span) -> Text:
    attributes = span.get("attributes") or {}
    label = service_name(clean(f"{span['service']:<8}")) + data(" " + str(span["name"]))
    label += Text(f"  {span['duration_ms']:.2f} ms", style="dim")
    if span.get("status") == "error":
        label += data(f"  {attributes.get('msshop.failure') or 'error'}", "bold red")
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
        label += Text("\n  ") + data("  ".join(facts), "dim")
    if attributes.get("msshop.breaks_encapsulation"):
        label += Text("\n  breaks encapsulation: one process opened every service's file",
                      style="yellow")
    if "msshop.events.kinds" in attributes:
        kinds = [f"{n} {kind}" for kind, n in attributes["msshop.events.kinds"].items()]
        named = [f"{kind} from {source} @ {position}"
                 for kind, source, position in attributes.get("msshop.events", [])[:3]]
        label += Text("\n  ") + data(f"rows from {attributes['msshop.events.count']} event(s): "
                      + ", ".join(kinds) + (f"; e.g. {'; '.join(named)}" if named else ""),
                      style="dim")
    return label


def trace(out: Console, spans: list[Span], trace_id: str) -> None:
    """The call tree: which service touched which data, and how long each hop took."""
    from msshop.instruments.traces.shape import summary, tree

    shape = summary(spans)
    out.print(Text(f"trace {trace_id}", style="bold") + Text(
        f"  services: {', '.join(shape['services'])}", style="dim"), soft_wrap=True)

    def add(branch: Tree, node: Node) -> None:
        child = branch.add(_span_label(node.span))
        for grandchild in node.children:
            add(child, grandchild)

    roots = tree(spans)
    top = Tree(_span_label(roots[0].span)) if len(roots) == 1 else Tree(Text("(trace)"))
    for node in roots[0].children if len(roots) == 1 else roots:
        add(top, node)
    out.print(top)


def text_document(text: str) -> None:
    """An export (OTLP/JSON, a Mermaid diagram), as is, for a file or a pipe."""
    print(text)
