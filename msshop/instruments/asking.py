"""user-orders, asked from the CLI: by each strategy, with the whole trace of who touched what.

The CLI is the root of every trace: it opens a span named "user-orders", sends its
`traceparent` to the query service, and afterwards gathers the spans every service kept for
that trace (GET /spans). Each trace is stored in the sandbox for `msshop trace`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from msshop.contracts.answers import QUESTION, UserOrders
from msshop.contracts.errors import InvalidArgument, MsshopError, ServiceError
from msshop.contracts.spans import Span, make_span, traceparent
from msshop.contracts.strategies import ReadStrategy
from msshop.instruments import monolith
from msshop.instruments.client import Refused, ShopClient
from msshop.instruments.traces.store import StoredTrace, TraceStore
from msshop.runtime.orchestrator.state import State

FANOUTS = ("batched", "naive")


@dataclass(frozen=True)
class Asked:
    """One answer, with the trace of how it was made."""

    strategy: ReadStrategy
    answer: UserOrders
    spans: list[Span]
    latency_ms: float
    trace_id: str
    fanout: str | None = None
    unsaved: str | None = None  # why the trace could not be stored (a full disk), if so


# The query service speaks HTTP, so its advice names its query parameters; a person at the
# CLI needs the flags that set them.
FLAGS = {"ask with a longer wait_ms": "ask with a longer --wait-ms",
         "ask with strategy=direct-call": "ask with --strategy direct-call"}


def in_flags(advice: str) -> str:
    for parameter, flag in FLAGS.items():
        advice = advice.replace(parameter, flag)
    return advice


def databases(state: State) -> dict[str, Path]:
    return {name: Path(state.services[name].db) for name in ("users", "products", "orders")}


class Questioner:
    def __init__(self, state: State, timeout: float = 30.0) -> None:
        self.state = state
        self.client = ShopClient(state, timeout=timeout)
        self.traces = TraceStore.of(Path(state.sandbox))

    def ask(self, user_id: int, strategy: ReadStrategy | str, fanout: str = "batched",
            after: int = 0, wait_ms: int = 2000, partial: bool = False) -> Asked:
        """Ask once. `after` (replicated): wait up to `wait_ms` until the read model has
        applied that bus position (read-your-writes)."""
        strategy = _strategy(strategy)
        if fanout not in FANOUTS:
            raise InvalidArgument(f"unknown fanout '{fanout}'; choose one of: "
                                  + ", ".join(FANOUTS))
        if strategy is ReadStrategy.MONOLITH:
            return self._ask_monolith(user_id)
        if after and strategy is not ReadStrategy.REPLICATED:
            raise InvalidArgument("{after} waits for the read model: use it with {strategy} "
                                  "replicated", "after", "strategy")
        if partial and strategy is not ReadStrategy.DIRECT_CALL:
            raise InvalidArgument("{partial} is how direct-call degrades: use it with "
                                  "{strategy} direct-call", "partial", "strategy")
        fan = fanout if strategy is ReadStrategy.DIRECT_CALL else None
        root = _root_span(strategy, user_id, fan, "client")
        root["attributes"].update({"peer.service": "query",
                                   "http.route": "/user-orders/{user_id}"})
        started = time.perf_counter()
        answer = self.client.user_orders(user_id, strategy, fan, after, wait_ms, partial,
                                         traceparent(root))
        latency = (time.perf_counter() - started) * 1000
        refused = answer if isinstance(answer, Refused) else None
        root["duration_ms"] = latency
        root["attributes"]["http.response.status_code"] = refused.status if refused else 200
        if refused:
            root["status"] = "error"
        trace_id: str = root["trace_id"]
        spans = [root, *self.gather(trace_id)]
        unsaved = self.traces.save(StoredTrace(trace_id, QUESTION, strategy, user_id, fan,
                                               spans))
        if isinstance(answer, Refused):
            raise ServiceError(f"{in_flags(answer.error)} (trace {trace_id})", answer.status)
        return Asked(strategy, answer, spans, latency, trace_id, fan, unsaved)

    def _ask_monolith(self, user_id: int) -> Asked:
        root = _root_span(ReadStrategy.MONOLITH, user_id, None, "internal")
        started = time.perf_counter()
        try:
            answer, touched = monolith.user_orders(databases(self.state), user_id)
        except LookupError as exc:
            raise MsshopError(f"{exc} (monolith join over every service's database)") from None
        latency = (time.perf_counter() - started) * 1000
        root["duration_ms"] = latency
        join = make_span("cli", "SELECT users JOIN orders JOIN products", "internal", {
            "db.system": "sqlite", "db.operation": "SELECT",
            "db.name": ", ".join(Path(p).name for p in touched.databases.values()),
            "db.sql.table": "users, orders, products", "msshop.rows": touched.rows,
            "msshop.keys": [user_id], "msshop.breaks_encapsulation": True},
            root["trace_id"], root["span_id"])
        join.update(start=root["start"], duration_ms=touched.duration_ms)
        trace_id: str = root["trace_id"]
        spans = [root, join]
        unsaved = self.traces.save(StoredTrace(trace_id, QUESTION, ReadStrategy.MONOLITH,
                                               user_id, None, spans))
        return Asked(ReadStrategy.MONOLITH, answer, spans, latency, trace_id, unsaved=unsaved)

    def gather(self, trace_id: str) -> list[Span]:
        """Every span any running service kept for this trace: ours, and a program of your
        own if it serves GET /spans in our format (one that does not is simply not asked
        again for this trace)."""
        spans: list[Span] = []
        for name, service in self.state.services.items():
            if service.status != "running" or not service.url.startswith("http"):
                continue  # a nats-server keeps no spans of ours
            try:
                spans.extend(self.client.spans(name, trace_id))
            except MsshopError:
                continue  # a service that is down kept nothing we can fetch
        return sorted(spans, key=lambda s: s["start"])


def _root_span(strategy: str, user_id: int, fanout: str | None, kind: str) -> Span:
    attributes: dict[str, object] = {"msshop.strategy": strategy, "msshop.user_id": user_id}
    if fanout:
        attributes["msshop.fanout"] = fanout
    return make_span("cli", QUESTION, kind, attributes)


def _strategy(name: ReadStrategy | str) -> ReadStrategy:
    try:
        return ReadStrategy(name)
    except ValueError:
        raise InvalidArgument(f"unknown strategy '{name}'; choose one of: "
                              + ", ".join(ReadStrategy)) from None
