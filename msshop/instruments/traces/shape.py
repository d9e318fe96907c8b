"""A gathered trace, put back together: the spans every service recorded for one question,
from several services, in any order; a span whose parent is not in the list counts as a root.

- `tree(spans)`: the call tree as `Node`s, roots and children in start order;
- `summary(spans)`: services, databases per service, sequential network hops, rows read and
  how long the whole thing took.

Exports are beside this: otlp.py (OTLP/JSON) and mermaid.py (a sequence diagram).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypedDict

from msshop.contracts.spans import Span

# Spans closer than this count as one after the other, not as overlapping: `start` comes from
# time.time() but `duration_ms` from perf_counter, so back-to-back calls can seem to touch.
OVERLAP_SLACK_S = 50e-6


@dataclass(frozen=True)
class Node:
    """A span and the spans it led to, in start order."""

    span: Span
    children: tuple[Node, ...] = ()


class Summary(TypedDict):
    """What `summary` returns (a plain dict at runtime)."""

    services: list[str]
    databases: dict[str, list[str]]
    sequential_hops: int
    rows_read: int
    duration_ms: float


def tree(spans: Iterable[Span]) -> list[Node]:
    """The call tree: roots (no parent, or a parent not in `spans`) and children by start."""
    ordered = sorted(spans, key=start)
    ids = {s["span_id"] for s in ordered}
    children: defaultdict[str, list[Span]] = defaultdict(list)
    roots = []
    for s in ordered:
        parent: str = s.get("parent_id") or ""
        if parent in ids and parent != s["span_id"]:
            children[parent].append(s)
        else:
            roots.append(s)
    built: set[int] = set()

    def build(s: Span) -> Node:
        built.add(id(s))
        return Node(s, tuple(build(c) for c in children[s["span_id"]] if id(c) not in built))

    nodes = [build(s) for s in roots]
    nodes += [build(s) for s in ordered if id(s) not in built]  # parent cycles: break them
    return sorted(nodes, key=lambda n: start(n.span))


def summary(spans: Iterable[Span]) -> Summary:
    """Services, database files per service, sequential network hops, rows read, duration."""
    spans = list(spans)
    databases: dict[str, set[str]] = {str(s["service"]): set() for s in spans}
    rows_read = 0
    for s in spans:
        attributes = attrs(s)
        if attributes.get("db.name") is not None:
            databases[str(s["service"])].add(str(attributes["db.name"]))
        rows = attributes.get("msshop.rows")
        if (str(attributes.get("db.operation", "")).upper() == "SELECT"
                and isinstance(rows, int) and not isinstance(rows, bool)):
            rows_read += rows
    roots = tree(spans)
    if len(roots) == 1:
        duration = float(roots[0].span["duration_ms"])
    else:  # several roots: wall-clock time from the first start to the last end
        duration = (max(map(end, (r.span for r in roots)), default=0.0)
                    - min(map(start, (r.span for r in roots)), default=0.0)) * 1000
    return {"services": sorted(databases),
            "databases": {service: sorted(names) for service, names in sorted(databases.items())},
            "sequential_hops": stages(roots), "rows_read": rows_read, "duration_ms": duration}


def start(span: Span) -> float:
    return float(span["start"])


def end(span: Span) -> float:
    return float(span["start"]) + float(span["duration_ms"]) / 1000


def attrs(span: Span) -> dict[str, Any]:
    attributes: dict[str, Any] = span.get("attributes") or {}
    return attributes


def stages(nodes: Iterable[Node]) -> int:
    """Client spans on the heaviest chain of nodes that ran one after another (nested add up)."""
    chains: list[tuple[float, int]] = []  # (end, heaviest chain ending with that node)
    for node in sorted(nodes, key=lambda n: end(n.span)):
        own = int(node.span.get("kind") == "client") + stages(node.children)
        began = start(node.span) + OVERLAP_SLACK_S
        chains.append((end(node.span), own + max((c for ended, c in chains if ended <= began),
                                                  default=0)))
    return max((c for _, c in chains), default=0)

