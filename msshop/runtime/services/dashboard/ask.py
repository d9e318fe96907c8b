"""Ask from the page (issue 28): "which products did user U order?", by a strategy the query
service serves, with the whole trace of who touched what, as `msshop query` asks it.

The dashboard is the root of the trace here, as the CLI is there: it opens a span named
"user-orders" (service "ui"), sends its `traceparent` to the query service, then gathers the
spans every part kept for that trace (GET /spans, with the owner's token, which stays in
this process). The page draws the waterfall with the trace page's own script
(msshop/drawings/waterfall.py) and lights the files the answer touched.

The monolith's join is not asked here: it opens every service's file, which only the CLI
may do (the dashboard's process is held to no file at all).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from contextlib import suppress
from typing import Any, TypedDict

from msshop.contracts.answers import QUESTION, UserOrders
from msshop.contracts.credentials import bearer
from msshop.contracts.spans import Span, make_span, traceparent
from msshop.contracts.strategies import SERVED, ReadStrategy
from msshop.runtime.platform.wire import Client, ConnectFailed, address_of
from msshop.runtime.services.dashboard.guard import Refused

ASK_TIMEOUT = 10.0  # seconds the query service has to answer
SPANS_TIMEOUT = 2.0  # seconds each part has to hand over its spans
COMPARE = "compare"  # both served strategies, one after the other
CHOICES = (*SERVED, COMPARE)
MAX_USER_ID = 2**53  # what a page's number holds exactly
RECENT = 20  # questions listed
QUESTION_ROUTE = "/user-orders/{user_id}"
TRACE_ID = re.compile(r"[0-9a-f]{32}")


class AskedView(TypedDict):
    """One answer as the page draws it: the answer (or the query service's line instead),
    its trace, and the files it touched."""

    strategy: str
    status: int  # the query service's HTTP status (0: it did not answer)
    answer: UserOrders | None
    error: str | None
    latency_ms: float
    trace_id: str
    spans: list[Span]
    touched: list[str]  # the SQLite files read or written for it, as spans name them


def asked_user(raw: str | None) -> int:
    """The `user` of GET /ask, or a 422 saying what a user id is."""
    try:
        user_id = int(raw or "")
    except ValueError:
        user_id = 0
    if not 1 <= user_id <= MAX_USER_ID:
        raise Refused(422, f"user must be a whole number from 1, not {raw!r}")
    return user_id


def asked_strategies(raw: str | None) -> tuple[ReadStrategy, ...]:
    if raw == COMPARE:
        return SERVED
    if raw in SERVED:
        return (ReadStrategy(raw),)
    raise Refused(422, f"strategy must be one of: {', '.join(CHOICES)}, not {raw!r} (the "
                       "monolith's join is the CLI's: msshop query --strategy monolith)")


def touched(spans: list[Span]) -> list[str]:
    """The files an answer touched: each span that ran SQL names its file (db.name)."""
    files = {str(s["attributes"].get("db.name")) for s in spans
             if s["attributes"].get("db.system") == "sqlite"}
    return sorted(f for part in files for f in part.split(", ") if f.endswith(".db"))


class Asker:
    def __init__(self, peers: dict[str, str], owner: str | None) -> None:
        self._peers = {name: address_of(url) for name, url in peers.items()}
        self._owner = owner
        self._client = Client()

    async def ask(self, user_id: int, strategy: ReadStrategy) -> AskedView:
        if "query" not in self._peers:
            raise Refused(503, "this sandbox has no query service to ask")
        root = make_span("ui", QUESTION, "client", {
            "msshop.strategy": str(strategy), "msshop.user_id": user_id,
            "peer.service": "query", "http.route": QUESTION_ROUTE})
        host, port = self._peers["query"]
        started = time.perf_counter()
        status, body = 0, b""
        try:
            async with asyncio.timeout(ASK_TIMEOUT):
                status, body = await self._client.request(
                    "GET", host, port, f"/user-orders/{user_id}?strategy={strategy}",
                    headers={"traceparent": traceparent(root)})
            error = None if status == 200 else _error_line(body, status)
        except (ConnectFailed, OSError):
            error = "the query service is not running: start it from Break it (start)"
        except TimeoutError:
            error = f"the query service did not answer within {ASK_TIMEOUT:g} s"
        root["duration_ms"] = (time.perf_counter() - started) * 1000
        root["attributes"]["http.response.status_code"] = status
        if error is not None:
            root["status"] = "error"
        spans = [root, *await self._gather(root["trace_id"])]
        spans.sort(key=lambda s: s["start"])
        answer: UserOrders | None = json.loads(body) if error is None else None
        return {"strategy": str(strategy), "status": status, "answer": answer,
                "error": error, "latency_ms": root["duration_ms"],
                "trace_id": root["trace_id"], "spans": spans, "touched": touched(spans)}

    async def recent(self, limit: int = RECENT) -> list[Span]:
        """The questions the query service answered last, one server span each (GET
        /traces: the traces it still keeps, whoever asked: the CLI, a page, a bench)."""
        if "query" not in self._peers or self._owner is None:
            return []
        host, port = self._peers["query"]
        traces = await self._owners_list(
            host, port, f"/traces?limit={limit}&route={QUESTION_ROUTE}", "traces")
        if traces is None:
            raise Refused(503, "the query service did not list its traces (they are in its "
                               "memory): is it running? start it from Break it")
        return [t for t in traces if isinstance(t, dict) and "trace_id" in t]

    async def trace(self, trace_id: str) -> list[Span]:
        """Every span the parts still keep of one trace, in start order."""
        if not TRACE_ID.fullmatch(trace_id):
            raise Refused(422, f"a trace id is 32 hex digits, not {trace_id[:40]!r}")
        spans = await self._gather(trace_id)
        if not spans:
            raise Refused(404, f"no part keeps trace {trace_id} any more (each keeps its "
                               "last spans only)")
        return sorted(spans, key=lambda s: s["start"])

    async def _gather(self, trace_id: str) -> list[Span]:
        found = await asyncio.gather(*(self._spans(host, port, trace_id)
                                       for host, port in self._peers.values()))
        return [span for spans in found for span in spans]

    async def _spans(self, host: str, port: int, trace_id: str) -> list[Span]:
        """A part's spans of the trace; none from one that is down or answers otherwise (a
        program of your own may serve GET /spans differently, or not at all)."""
        spans = await self._owners_list(host, port, f"/spans?trace_id={trace_id}", "spans")
        return [s for s in spans or [] if isinstance(s, dict) and "span_id" in s
                and isinstance(s.get("attributes"), dict)]

    async def _owners_list(self, host: str, port: int, path: str, key: str
                           ) -> list[Any] | None:
        """GET `path` with the owner's token: the list under `key` of its answer (None:
        the part is down, or answered something else)."""
        if self._owner is None:
            return None
        try:
            async with asyncio.timeout(SPANS_TIMEOUT):
                status, body = await self._client.request("GET", host, port, path,
                                                          headers=bearer(self._owner))
        except (ConnectFailed, OSError, TimeoutError):
            return None
        answer = _decoded(body)
        found = answer.get(key) if status == 200 and isinstance(answer, dict) else None
        return found if isinstance(found, list) else None

    def close(self) -> None:
        self._client.close()


def _decoded(body: bytes) -> Any:
    with suppress(ValueError):
        return json.loads(body)
    return None


def _error_line(body: bytes, status: int) -> str:
    answer = _decoded(body)
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return str(answer["error"])
    return f"the query service answered HTTP {status}"
