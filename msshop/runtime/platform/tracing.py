"""Making spans in a service: which service touched which data, and how long each hop took.

The span record, its ids and the W3C `traceparent` header are msshop.contracts.spans, shared
with the CLI that reads traces back. The current span travels in a ContextVar, so the peer
client adds a `traceparent` header to every call and database spans find their parent
without being passed it. Each service keeps its recent spans in a bounded ring and serves
them at GET /spans?trace_id=…; whoever asked the question (the CLI) gathers the whole trace
from every service.
"""

from __future__ import annotations

import time
from collections import deque
from contextvars import ContextVar
from typing import Any

from msshop.contracts.config import SPANS_KEPT
from msshop.contracts.spans import Span, new_span_id, new_trace_id

_current: ContextVar[Span | None] = ContextVar("msshop_current_span", default=None)
# the caller asked for this request to be followed (its traceparent's sampled flag): then a
# write's events carry the span that made them, and the asynchronous part records spans too
_followed: ContextVar[bool] = ContextVar("msshop_followed", default=False)


def current_span() -> Span | None:
    return _current.get()


class Tracer:
    """Makes spans for one service and keeps the finished ones in a ring."""

    def __init__(self, service: str, capacity: int = SPANS_KEPT) -> None:
        self.service = service
        self.finished: deque[Span] = deque(maxlen=capacity)

    def start(self, name: str, kind: str = "internal", attributes: dict[str, Any] | None = None,
              trace_id: str | None = None, parent_id: str | None = None) -> Span:
        """A new span, child of the current one unless trace_id/parent_id say otherwise."""
        if trace_id is None:
            parent = _current.get()
            if parent is not None:
                trace_id, parent_id = parent["trace_id"], parent["span_id"]
            else:
                trace_id = new_trace_id()
        return {"trace_id": trace_id, "span_id": new_span_id(), "parent_id": parent_id,
                "service": self.service, "name": name, "kind": kind, "start": time.time(),
                "duration_ms": 0.0, "status": "ok", "attributes": attributes or {},
                "_t0": time.perf_counter()}

    def finish(self, span: Span) -> Span:
        span["duration_ms"] = (time.perf_counter() - span.pop("_t0")) * 1000
        self.finished.append(span)
        return span

    def span(self, name: str, kind: str = "internal", **attributes: Any) -> SpanScope:
        """Time a block as a child of the current span; it becomes current inside."""
        return SpanScope(self, self.start(name, kind, attributes))

    def record(self, name: str, kind: str, trace_id: str, parent_id: str | None,
               started: float, duration_ms: float, attributes: dict[str, Any]) -> Span:
        """A span of work already done (timed by the caller), kept like any other."""
        span = {"trace_id": trace_id, "span_id": new_span_id(), "parent_id": parent_id,
                "service": self.service, "name": name, "kind": kind, "start": started,
                "duration_ms": duration_ms, "status": "ok", "attributes": attributes}
        self.finished.append(span)
        return span

    def activate(self, span: Span) -> Any:
        return _current.set(span)

    def deactivate(self, token: Any) -> None:
        _current.reset(token)

    def spans_of(self, trace_id: str) -> list[Span]:
        return [s for s in self.finished if s["trace_id"] == trace_id]

    def recent(self, limit: int, route: str | None = None) -> list[Span]:
        """The newest server spans (of `route`, if given), one per trace, newest first."""
        found: list[Span] = []
        seen: set[str] = set()
        for span in reversed(self.finished):
            if span["kind"] != "server" or span["trace_id"] in seen or (
                    route is not None and span["attributes"].get("http.route") != route):
                continue
            seen.add(span["trace_id"])
            found.append(span)
            if len(found) == limit:
                break
        return found


class SpanScope:
    """`with tracer.span(...) as span:` — a class, not a generator: this is on every hop."""

    __slots__ = ("span", "token", "tracer")

    def __init__(self, tracer: Tracer, span: Span) -> None:
        self.tracer = tracer
        self.span = span
        self.token: Any = None

    def __enter__(self) -> Span:
        self.token = _current.set(self.span)
        return self.span

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> None:
        if kind is not None:
            self.span["status"] = "error"
            self.span["attributes"]["error.type"] = kind.__name__
        _current.reset(self.token)
        self.tracer.finish(self.span)


def db_attributes(db_name: str, operation: str, table: str, **extra: Any) -> dict[str, Any]:
    """OpenTelemetry database attributes for a statement on a service's own SQLite file."""
    return {"db.system": "sqlite", "db.name": db_name, "db.operation": operation,
            "db.sql.table": table, **extra}


def current_trace_id() -> str | None:
    span = _current.get()
    return None if span is None else str(span["trace_id"])


def follow(followed: bool) -> Any:
    """Mark the current request as followed (or not); returns the token to reset with."""
    return _followed.set(followed)


def unfollow(token: Any) -> None:
    _followed.reset(token)


def followed_span() -> str | None:
    """The current span's id if the caller asked to follow this request, else None: what a
    write puts in its events so that their journey can be traced (`parent_span`)."""
    span = _current.get()
    return str(span["span_id"]) if span is not None and _followed.get() else None
