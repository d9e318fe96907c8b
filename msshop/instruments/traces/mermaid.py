"""A trace as a Mermaid `sequenceDiagram`: who called whom, and which database file."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

from msshop.contracts.spans import Span
from msshop.instruments.traces.shape import OVERLAP_SLACK_S, Node, attrs, end, start, tree

# Words Mermaid 11 will not take as a participant id (any case); "endpoints" is fine.
_MERMAID_KEYWORDS = frozenset({
    "participant", "actor", "create", "destroy", "option", "break", "critical", "link", "links",
    "properties", "details", "activate", "deactivate", "autonumber", "sequencediagram", "title",
    "par_over", "acctitle", "accdescr", "else", "and", "end", "box", "loop", "rect", "opt", "alt",
    "par", "note", "over", "off"})


def to_mermaid(spans: Iterable[Span]) -> str:
    """A Mermaid sequenceDiagram: calls between services and statements on database files."""
    diagram = _Diagram()
    body = diagram.block([(root, None) for root in tree(spans)])
    return "\n".join(["sequenceDiagram", *("    " + line
                                           for line in diagram.participants + body)]) + "\n"


def _text(value: Any) -> str:
    """Text Mermaid shows as written: one line, `#` and `;` as its entity codes."""
    return " ".join(str(value).split()).translate({ord("#"): "#35;", ord(";"): "#59;"})


def _ms(span: Span) -> str:
    ms = float(span["duration_ms"])
    return f"{ms:.1f} ms" if ms >= 1 else f"{ms:.2f} ms"


def _outcome(*spans: Span) -> str:
    """What a reply said: the HTTP status code if one was recorded, else ok / error <type>."""
    for s in spans:
        code = attrs(s).get("http.response.status_code")
        if code is not None:
            return _text(code)
    if spans[0].get("status") != "error":
        return "ok"
    error_type = attrs(spans[0]).get("error.type")
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
        for node, caller in sorted(kids, key=lambda kid: start(kid[0].span)):
            lines = self.lines(node, caller)
            if not lines:
                continue
            if groups and start(node.span) < group_end - OVERLAP_SLACK_S:
                groups[-1].append(lines)
                group_end = max(group_end, end(node.span))
            else:
                groups.append([lines])
                group_end = end(node.span)
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
        s, attributes = node.span, attrs(node.span)
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
