"""Read a trace: the spans every service recorded for one question, put back together.

A trace is a list of span dicts (the format of `msshop.runtime.platform.tracing`) from several
services, in any order; a span whose parent is not in the list counts as a root. Each export
is a pure function of that list:

- `tree(spans)`: the call tree as `Node`s, roots and children in start order;
- `to_otlp_json(spans)`: an OTLP/JSON `TracesData` document (opentelemetry-proto trace/v1) that
  an OpenTelemetry collector, Jaeger or Tempo can import;
- `to_mermaid(spans)`: a Mermaid `sequenceDiagram` of who called whom and which database file;
- `summary(spans)`: services, databases per service, sequential network hops, rows read and
  how long the whole thing took.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, TypedDict

from msshop.runtime.platform.tracing import Span

# Spans closer than this count as one after the other, not as overlapping: `start` comes from
# time.time() but `duration_ms` from perf_counter, so back-to-back calls can seem to touch.
OVERLAP_SLACK_S = 50e-6

_KINDS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_STATUS_CODES = {"ok": 1, "error": 2}
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
# Words Mermaid 11 will not take as a participant id (any case); "endpoints" is fine.
_MERMAID_KEYWORDS = frozenset({
    "participant", "actor", "create", "destroy", "option", "break", "critical", "link", "links",
    "properties", "details", "activate", "deactivate", "autonumber", "sequencediagram", "title",
    "par_over", "acctitle", "accdescr", "else", "and", "end", "box", "loop", "rect", "opt", "alt",
    "par", "note", "over", "off"})


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
    ordered = sorted(spans, key=_start)
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
    return sorted(nodes, key=lambda n: _start(n.span))


def to_otlp_json(spans: Iterable[Span]) -> dict[str, Any]:
    """An OTLP/JSON `TracesData` document: one resourceSpans per service, ids in hex."""
    by_service: dict[str, list[dict[str, Any]]] = {}
    for s in sorted(spans, key=_start):
        by_service.setdefault(str(s["service"]), []).append(_otlp_span(s))
    return {"resourceSpans": [
        {"resource": {"attributes": [_key_value("service.name", service)]},
         "scopeSpans": [{"scope": {"name": "msshop"}, "spans": otlp_spans}]}
        for service, otlp_spans in sorted(by_service.items())]}


def to_mermaid(spans: Iterable[Span]) -> str:
    """A Mermaid sequenceDiagram: calls between services and statements on database files."""
    diagram = _Diagram()
    body = diagram.block([(root, None) for root in tree(spans)])
    return "\n".join(["sequenceDiagram", *("    " + line
                                           for line in diagram.participants + body)]) + "\n"


def summary(spans: Iterable[Span]) -> Summary:
    """Services, database files per service, sequential network hops, rows read, duration."""
    spans = list(spans)
    databases: dict[str, set[str]] = {str(s["service"]): set() for s in spans}
    rows_read = 0
    for s in spans:
        attributes = _attrs(s)
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
        duration = (max(map(_end, (r.span for r in roots)), default=0.0)
                    - min(map(_start, (r.span for r in roots)), default=0.0)) * 1000
    return {"services": sorted(databases),
            "databases": {service: sorted(names) for service, names in sorted(databases.items())},
            "sequential_hops": _stages(roots), "rows_read": rows_read, "duration_ms": duration}


def _start(span: Span) -> float:
    return float(span["start"])


def _end(span: Span) -> float:
    return float(span["start"]) + float(span["duration_ms"]) / 1000


def _attrs(span: Span) -> dict[str, Any]:
    attributes: dict[str, Any] = span.get("attributes") or {}
    return attributes


def _stages(nodes: Iterable[Node]) -> int:
    """Client spans on the heaviest chain of nodes that ran one after another (nested add up)."""
    chains: list[tuple[float, int]] = []  # (end, heaviest chain ending with that node)
    for node in sorted(nodes, key=lambda n: _end(n.span)):
        own = int(node.span.get("kind") == "client") + _stages(node.children)
        start = _start(node.span) + OVERLAP_SLACK_S
        chains.append((_end(node.span), own + max((c for end, c in chains if end <= start),
                                                  default=0)))
    return max((c for _, c in chains), default=0)


# --- OTLP/JSON ---------------------------------------------------------------------------


def _otlp_span(s: Span) -> dict[str, Any]:
    attributes = _attrs(s)
    start_ns = round(_start(s) * 1e6) * 1000  # a float of unix seconds holds about 0.2 µs
    status: dict[str, Any] = {"code": _STATUS_CODES.get(s.get("status", "ok"), 0)}
    if status["code"] == 2 and attributes.get("error.type") is not None:
        status["message"] = str(attributes["error.type"])
    parent = {"parentSpanId": s["parent_id"]} if s.get("parent_id") else {}
    return {"traceId": s["trace_id"], "spanId": s["span_id"], **parent, "name": str(s["name"]),
            "kind": _KINDS.get(str(s.get("kind", "internal")).lower(), 0),
            "startTimeUnixNano": str(start_ns),
            "endTimeUnixNano": str(start_ns + round(float(s["duration_ms"]) * 1e6)),
            "attributes": [_key_value(k, v) for k, v in attributes.items() if v is not None],
            "status": status}


def _key_value(key: Any, value: Any) -> dict[str, Any]:
    return {"key": str(key), "value": _any_value(value)}


def _any_value(value: Any) -> dict[str, Any]:
    """An OTLP AnyValue; None (kept only inside arrays) is the empty AnyValue."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value if math.isfinite(value) else _NON_FINITE[repr(value)]}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list | tuple) and all(
            v is None or isinstance(v, str | int | float) for v in value):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    try:  # nested lists or dicts, ints beyond int64, anything else: a JSON string
        return {"stringValue": json.dumps(value, default=str)}
    except (TypeError, ValueError):
        return {"stringValue": str(value)}


# --- Mermaid -----------------------------------------------------------------------------


def _text(value: Any) -> str:
    """Text Mermaid shows as written: one line, `#` and `;` as its entity codes."""
    return " ".join(str(value).split()).translate({ord("#"): "#35;", ord(";"): "#59;"})


def _ms(span: Span) -> str:
    ms = float(span["duration_ms"])
    return f"{ms:.1f} ms" if ms >= 1 else f"{ms:.2f} ms"


def _outcome(*spans: Span) -> str:
    """What a reply said: the HTTP status code if one was recorded, else ok / error <type>."""
    for s in spans:
        code = _attrs(s).get("http.response.status_code")
        if code is not None:
            return _text(code)
    if spans[0].get("status") != "error":
        return "ok"
    error_type = _attrs(spans[0]).get("error.type")
    return _text(f"error {error_type}" if error_type else "error")


class _Diagram:
    """Participants in order of first use, and the arrows of the spans under them."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], str] = {}
        self.participants: list[str] = []

    def who(self, key: tuple[str, str], label: str, hint: str | None = None) -> str:
        """The participant id for `key`, declared (with `label` shown) on first use."""
        if key not in self.ids:
            base = re.sub(r"\W", "_", hint or label, flags=re.ASCII) or "_"
            base = "_" + base if base.lower() in _MERMAID_KEYWORDS else base
            pid, n = base, 1
            while pid in self.ids.values():
                n += 1
                pid = f"{base}_{n}"
            self.ids[key] = pid
            self.participants.append(f"participant {pid}"
                                     + ("" if pid == label else f" as {_text(label)}"))
        return self.ids[key]

    def service(self, name: Any) -> str:
        return self.who(("service", str(name)), str(name))

    def block(self, kids: list[tuple[Node, str | None]]) -> list[str]:
        """Spans in start order; those that overlap in time go side by side in par/and/end."""
        groups: list[list[list[str]]] = []
        group_end = -math.inf
        for node, caller in sorted(kids, key=lambda kid: _start(kid[0].span)):
            lines = self.lines(node, caller)
            if not lines:
                continue
            if groups and _start(node.span) < group_end - OVERLAP_SLACK_S:
                groups[-1].append(lines)
                group_end = max(group_end, _end(node.span))
            else:
                groups.append([lines])
                group_end = _end(node.span)
        out: list[str] = []
        for group in groups:
            if len(group) == 1:
                out += group[0]
                continue
            for i, lines in enumerate(group):
                out += ["and" if i else "par", *("    " + line for line in lines)]
            out.append("end")
        return out

    def lines(self, node: Node, caller: str | None) -> list[str]:
        """Arrows for one span and what it led to; `caller` is the parent's service."""
        s, attributes = node.span, _attrs(node.span)
        service = str(s["service"])
        kids: list[tuple[Node, str | None]] = [(c, service) for c in node.children]
        if "db.system" in attributes:
            me = self.service(service)
            name = str(attributes.get("db.name") or attributes["db.system"])
            db = self.who(("db", name), PurePath(name).name or name)
            what = " ".join(str(attributes[k]) for k in ("db.operation", "db.sql.table")
                            if attributes.get(k)) or s["name"]
            out = [f"{me}->>{db}: {_text(what)} ({_ms(s)})"]
            rows = attributes.get("msshop.rows")
            if s.get("status") == "error":
                out.append(f"{db}--x{me}: {_outcome(s)}")
            elif rows is not None:
                out.append(f"{db}-->>{me}: {_text(rows)} row{'' if rows == 1 else 's'}")
            return out + self.block(kids)
        if s.get("kind") == "client" and attributes.get("peer.service"):
            me, peer_name = self.service(service), str(attributes["peer.service"])
            peer = self.service(peer_name)
            inner: list[tuple[Node, str | None]] = []
            reply: Span | None = None
            for c in node.children:  # the peer's server span: draw what it did, not itself
                if c.span.get("kind") == "server" and c.span["service"] == peer_name:
                    inner += [(g, peer_name) for g in c.children]
                    reply = c.span
                else:
                    inner.append((c, service))
            out = [f"{me}->>{peer}: {_text(s['name'])} ({_ms(s)})", *self.block(inner)]
            if reply is not None:
                out.append(f"{peer}-->>{me}: {_outcome(reply, s)}")
            elif s.get("status") == "error":
                out.append(f"{peer}--x{me}: {_outcome(s)}")
            return out
        if caller == service:  # internal work: only what it led to
            return self.block(kids)
        src = (self.who(("client", ""), "msshop CLI", "client") if caller is None
               else self.service(caller))
        me = self.service(service)
        return [f"{src}->>{me}: {_text(s['name'])} ({_ms(s)})", *self.block(kids),
                f"{me}-->>{src}: {_outcome(s)}"]
