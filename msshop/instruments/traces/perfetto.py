"""A trace as Chrome trace-event JSON, which ui.perfetto.dev and chrome://tracing open:
a process (a track) per service, each span a complete ("X") slice on it, and a flow arrow
from each call to the span it caused in another service, and, in a followed write's trace,
from the relay's publish of an event to its apply in the read model (the event's hop
through the bus: the same position).

Format: the Trace Event Format document (`{"traceEvents": [...]}`), times in microseconds
from the trace's first start. A track draws only slices that nest, so the spans of one
service that overlap without nesting (the query service's calls to users and orders, made
at once) go on lanes of their own ("tid" 1, 2 …) within its process.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from msshop.contracts.spans import Span
from msshop.instruments.traces.shape import attrs, end, start

SLACK_S = 1e-6  # starts and ends this close count as touching, not overlapping


def to_perfetto(spans: Iterable[Span]) -> dict[str, Any]:
    spans = sorted(spans, key=lambda s: (start(s), -float(s["duration_ms"])))
    if not spans:
        return {"traceEvents": [], "displayTimeUnit": "ms"}
    began = start(spans[0])
    pids: dict[str, int] = {}
    for s in spans:
        pids.setdefault(str(s["service"]), len(pids) + 1)
    lanes = _lanes(spans)
    events: list[dict[str, Any]] = []
    for service, pid in pids.items():
        events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                       "args": {"name": service}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0,
                       "args": {"sort_index": pid}})
    by_id = {s["span_id"]: s for s in spans}
    flow = 0
    for s in spans:
        pid, tid = pids[str(s["service"])], lanes[s["span_id"]]
        ts = _micros(start(s) - began)
        events.append({
            "name": str(s["name"]), "cat": str(s.get("kind", "internal")), "ph": "X",
            "ts": ts, "dur": round(float(s["duration_ms"]) * 1000, 3), "pid": pid,
            "tid": tid, "args": {"span_id": s["span_id"], "parent_id": s.get("parent_id"),
                                 "status": s.get("status", "ok"), **_plain(attrs(s))}})
        parent = by_id.get(s.get("parent_id") or "")
        if parent is not None and parent["service"] != s["service"]:
            flow += 1  # the call: from the caller's span to the callee's
            events.append({"name": "call", "cat": "call", "ph": "s", "id": flow,
                           "pid": pids[str(parent["service"])],
                           "tid": lanes[parent["span_id"]], "ts": ts})
            events.append({"name": "call", "cat": "call", "ph": "f", "bp": "e", "id": flow,
                           "pid": pid, "tid": tid, "ts": ts})
    published = {attrs(s).get("msshop.position"): s for s in spans
                 if s.get("kind") == "producer" and "msshop.position" in attrs(s)}
    for s in spans:
        source = published.get(attrs(s).get("msshop.position"))
        if s.get("kind") == "consumer" and source is not None:
            flow += 1  # the event's hop: published at the source, applied in the read model
            events.append({"name": "event", "cat": "event", "ph": "s", "id": flow,
                           "pid": pids[str(source["service"])],
                           "tid": lanes[source["span_id"]],
                           "ts": _micros(start(source) - began)})
            events.append({"name": "event", "cat": "event", "ph": "f", "bp": "e", "id": flow,
                           "pid": pids[str(s["service"])], "tid": lanes[s["span_id"]],
                           "ts": _micros(start(s) - began)})
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"trace_id": spans[0]["trace_id"], "exported_by": "msshop"}}


def _lanes(spans: list[Span]) -> dict[str, int]:
    """A lane (tid, from 1) per span such that the slices of a lane nest: a span goes on the
    first lane of its service where it fits inside what is still open, or where nothing is."""
    open_by_service: dict[str, list[list[float]]] = {}
    placed: dict[str, int] = {}
    for s in spans:  # by start, the longer first
        lanes = open_by_service.setdefault(str(s["service"]), [])
        begins, ends = start(s), end(s)
        for number, stack in enumerate(lanes, start=1):
            while stack and stack[-1] <= begins + SLACK_S:
                stack.pop()  # ended before this one began
            if not stack or ends <= stack[-1] + SLACK_S:
                stack.append(ends)
                placed[s["span_id"]] = number
                break
        else:
            lanes.append([ends])
            placed[s["span_id"]] = len(lanes)
    return placed


def _micros(seconds: float) -> float:
    return round(seconds * 1_000_000, 3)


def _plain(attributes: dict[str, Any]) -> dict[str, Any]:
    """Attributes as JSON can carry them (anything else as its text)."""
    return {key: value if isinstance(value, str | int | float | bool | list | dict | None)
            else str(value) for key, value in attributes.items()}
