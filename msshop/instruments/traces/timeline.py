"""A trace on one time axis: each span a bar that starts where it started and is as long
as it lasted, in columns, so that what ran at once and what ran one after the other show
at a glance (users and orders side by side; naive's calls one after another).

The geometry is here, as data, and tested; render/traces.py draws it. Rows are in the call
tree's order (a span under the one that made it), so a row's indent is its depth.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from msshop.contracts.spans import Span
from msshop.instruments.traces.shape import Node, start, tree


@dataclass(frozen=True)
class Bar:
    span: Span
    depth: int  # how deep in the call tree (0: a root)
    offset: int  # its first column on the axis, from 0
    width: int  # how many columns it covers, at least one
    start_ms: float  # when it started, after the trace began


@dataclass(frozen=True)
class Timeline:
    bars: list[Bar]
    columns: int  # the axis's width
    total_ms: float  # the time the axis covers: from the first start to the last end

    @property
    def ms_per_column(self) -> float:
        return self.total_ms / self.columns


def timeline(spans: Iterable[Span], columns: int) -> Timeline:
    """Bars for `spans` on an axis of `columns` columns. A span's bar covers the columns
    its time touches: it starts in the column its start falls in and ends in the column
    its end falls in, so both are within one column of the exact place."""
    spans = list(spans)
    if columns < 1:
        raise ValueError("a timeline needs at least one column")
    if not spans:
        return Timeline([], columns, 0.0)
    began = min(start(s) for s in spans)
    ended = max(start(s) + s["duration_ms"] / 1000 for s in spans)
    total_ms = max((ended - began) * 1000, 1e-6)
    scale = columns / total_ms  # columns per ms
    bars = []
    for node, depth in _in_tree_order(tree(spans)):
        span = node.span
        start_ms = (start(span) - began) * 1000
        offset = min(columns - 1, math.floor(start_ms * scale))
        end = math.ceil((start_ms + max(span["duration_ms"], 0.0)) * scale)
        width = max(1, min(columns, end) - offset)
        bars.append(Bar(span, depth, offset, width, start_ms))
    return Timeline(bars, columns, total_ms)


def _in_tree_order(nodes: Iterable[Node], depth: int = 0) -> Iterator[tuple[Node, int]]:
    for node in nodes:
        yield node, depth
        yield from _in_tree_order(node.children, depth + 1)
