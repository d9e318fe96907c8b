"""user-orders, asked from the CLI: by each strategy, with the whole trace of who touched what.

The CLI is the root of every trace: it opens a span named "user-orders", sends its
`traceparent` to the query service, and afterwards gathers the spans every service kept for
that trace (GET /spans). Traces are stored in the sandbox (traces/<id>.json) for
`msshop trace`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msshop.contracts.errors import MsshopError, SandboxError, ServiceError, UsageError
from msshop.instruments import monolith
from msshop.instruments.client import ShopClient
from msshop.runtime.orchestrator.state import State

if TYPE_CHECKING:
    from msshop.instruments.traces.shape import Summary

STRATEGIES = ("direct-call", "replicated", "monolith")
FANOUTS = ("batched", "naive")
KEEP_TRACES = 200


@dataclass
class Asked:
    strategy: str
    answer: dict[str, Any]
    spans: list[dict[str, Any]]
    latency_ms: float
    trace_id: str
    fanout: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def new_id(size: int) -> str:
    return os.urandom(size).hex()


def _root_span(trace_id: str, strategy: str, user_id: int, fanout: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {"msshop.strategy": strategy, "msshop.user_id": user_id}
    if fanout:
        attributes["msshop.fanout"] = fanout
    return {"trace_id": trace_id, "span_id": new_id(8), "parent_id": None, "service": "cli",
            "name": "user-orders", "kind": "client" if strategy != "monolith" else "internal",
            "start": time.time(), "duration_ms": 0.0, "status": "ok", "attributes": attributes}


def databases(state: State) -> dict[str, Path]:
    return {name: Path(state.services[name].db) for name in ("users", "products", "orders")}


class Questioner:
    def __init__(self, state: State, timeout: float = 30.0) -> None:
        self.state = state
        self.client = ShopClient(state, timeout=timeout)
        self.traces = TraceStore(Path(state.sandbox) / "traces")

    def ask(self, user_id: int, strategy: str, fanout: str = "batched", after: int = 0,
            wait_ms: int = 2000, partial: bool = False) -> Asked:
        """Ask once. `after` (replicated): wait up to `wait_ms` until the read model has
        applied that bus position (read-your-writes)."""
        if strategy not in STRATEGIES:
            raise UsageError(f"unknown strategy '{strategy}'; choose one of: "
                             + ", ".join(STRATEGIES))
        if fanout not in FANOUTS:
            raise UsageError(f"unknown fanout '{fanout}'; choose one of: " + ", ".join(FANOUTS))
        if strategy == "monolith":
            return self._ask_monolith(user_id)
        trace_id = new_id(16)
        fan = fanout if strategy == "direct-call" else None
        root = _root_span(trace_id, strategy, user_id, fan)
        root["attributes"].update({"peer.service": "query",
                                   "http.route": "/user-orders/{user_id}"})
        path = f"/user-orders/{user_id}?strategy={strategy}" + (f"&fanout={fan}" if fan else "")
        if after:
            if strategy != "replicated":
                raise UsageError("--after waits for the read model: use it with --strategy "
                                 "replicated")
            path += f"&after={after}&wait_ms={wait_ms}"
        if partial:
            if strategy != "direct-call":
                raise UsageError("--partial is how direct-call degrades: use it with "
                                 "--strategy direct-call")
            path += "&partial=1"
        headers = {"traceparent": f"00-{trace_id}-{root['span_id']}-01"}
        started = time.perf_counter()
        status, answer = self.client.exchange("query", "GET", path, headers=headers)
        latency = (time.perf_counter() - started) * 1000
        root["duration_ms"] = latency
        root["attributes"]["http.response.status_code"] = status
        if status >= 400:
            root["status"] = "error"
        spans = [root, *self.gather(trace_id)]
        self.traces.save(trace_id, {"question": "user-orders", "strategy": strategy,
                                    "user_id": user_id, "fanout": fan, "spans": spans})
        if status >= 400:
            message = answer.get("error") if isinstance(answer, dict) else None
            raise ServiceError((message or f"query answered HTTP {status}")
                               + f" (trace {trace_id})", status)
        return Asked(strategy, answer, spans, latency, trace_id, fan)

    def _ask_monolith(self, user_id: int) -> Asked:
        trace_id = new_id(16)
        root = _root_span(trace_id, "monolith", user_id, None)
        started = time.perf_counter()
        try:
            answer = monolith.user_orders(databases(self.state), user_id)
        except LookupError as exc:
            raise MsshopError(f"{exc} (monolith join over every service's database)") from None
        latency = (time.perf_counter() - started) * 1000
        touched = answer.pop("_touched")
        root["duration_ms"] = latency
        join = {
            "trace_id": trace_id, "span_id": new_id(8), "parent_id": root["span_id"],
            "service": "cli", "name": "SELECT users JOIN orders JOIN products",
            "kind": "internal", "start": root["start"], "duration_ms": touched["duration_ms"],
            "status": "ok", "attributes": {
                "db.system": "sqlite", "db.operation": "SELECT",
                "db.name": ", ".join(Path(p).name for p in touched["databases"].values()),
                "db.sql.table": "users, orders, products", "msshop.rows": touched["rows"],
                "msshop.keys": [user_id], "msshop.breaks_encapsulation": True}}
        spans = [root, join]
        self.traces.save(trace_id, {"question": "user-orders", "strategy": "monolith",
                                    "user_id": user_id, "fanout": None, "spans": spans})
        return Asked("monolith", answer, spans, latency, trace_id)

    def gather(self, trace_id: str) -> list[dict[str, Any]]:
        """Every span any running service kept for this trace."""
        spans: list[dict[str, Any]] = []
        for name, service in self.state.services.items():
            if service.status != "running":
                continue
            try:
                found = self.client.request(name, "GET", f"/spans?trace_id={trace_id}")
            except MsshopError:
                continue  # a service that is down kept nothing we can fetch
            spans.extend(found["spans"])
        return sorted(spans, key=lambda s: s["start"])


class TraceStore:
    """Traces of recent questions, one JSON file each, and which was last."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, trace_id: str, trace: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{trace_id}.json").write_text(json.dumps({"trace_id": trace_id,
                                                                  **trace}))
        (self.folder / "last").write_text(trace_id)
        stored = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in stored[:-KEEP_TRACES]:
            old.unlink(missing_ok=True)

    def load(self, trace_id: str) -> dict[str, Any]:
        if trace_id == "last":
            try:
                trace_id = (self.folder / "last").read_text().strip()
            except FileNotFoundError:
                raise SandboxError("no trace yet; ask a question first, e.g.: "
                                   "msshop query --user 1") from None
        if not all(c in "0123456789abcdef" for c in trace_id) or len(trace_id) != 32:
            raise UsageError(f"'{trace_id}' is not a trace id (32 hex digits) or 'last'")
        try:
            trace: dict[str, Any] = json.loads((self.folder / f"{trace_id}.json").read_text())
        except FileNotFoundError:
            raise SandboxError(f"no stored trace {trace_id} in {self.folder}; the last "
                               f"{KEEP_TRACES} are kept") from None
        return trace


def differences(expected: list[dict[str, Any]], got: list[dict[str, Any]],
                limit: int = 5) -> list[str]:
    """What differs between two answers' order lists, in words (empty when equal)."""
    want = {o["order_id"]: o for o in expected}
    have = {o["order_id"]: o for o in got}
    found = [f"order {oid} is missing" for oid in want if oid not in have]
    found += [f"order {oid} should not be there" for oid in have if oid not in want]
    for oid in want.keys() & have.keys():
        for key, value in want[oid].items():
            if have[oid].get(key) != value:
                found.append(f"order {oid} {key} is {have[oid].get(key)!r}, "
                             f"expected {value!r}")
    if len(found) > limit:
        found = [*found[:limit], f"and {len(found) - limit} more"]
    return found


# --- compare and verify ----------------------------------------------------------------------

COMPARED = (("monolith", "batched"), ("direct-call", "batched"), ("direct-call", "naive"),
            ("replicated", "batched"))


def compare(questioner: Questioner, user_id: int) -> list[dict[str, Any]]:
    """Every strategy side by side, each checked against the monolith's answer."""
    from msshop.instruments.traces.shape import summary

    rows: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] | None = None
    for strategy, fanout in COMPARED:
        label = f"{strategy} ({fanout})" if strategy == "direct-call" else strategy
        try:
            asked = questioner.ask(user_id, strategy, fanout)
        except MsshopError as exc:
            rows.append({"strategy": label, "error": exc.message})
            continue
        orders = asked.answer["orders"]
        if truth is None and strategy == "monolith":
            truth = orders
        found = differences(truth, orders) if truth is not None else []
        shape = summary(asked.spans)
        rows.append({
            "strategy": label, "error": None, "equal": truth is not None and not found,
            "differences": found, "orders": len(orders), "latency_ms": asked.latency_ms,
            "sequential_hops": network_stages(asked.spans, shape),
            "services": shape["services"], "databases": shape["databases"],
            "rows_read": shape["rows_read"], "freshness": asked.answer.get("freshness"),
            "trace_id": asked.trace_id,
        })
    return rows


def network_stages(spans: list[dict[str, Any]], shape: Summary) -> int:
    """Sequential network stages behind the question (the CLI's own call not counted)."""
    stages = int(shape["sequential_hops"])
    root = next((s for s in spans if s["parent_id"] is None), None)
    return stages - 1 if root is not None and root["kind"] == "client" else stages


def caught_up(client: ShopClient, timeout: float) -> dict[str, int]:
    """Wait until every outbox is empty and the read model has applied the bus's head."""
    deadline = time.monotonic() + timeout
    while True:
        pending = sum(client.request(name, "GET", "/health")["outbox"]["pending"]
                      for name in ("users", "products", "orders"))
        head = client.request("bus", "GET", "/health")["head"]
        position = client.request("query", "GET", "/health")["consumer"]["position"]
        if pending == 0 and position == head:
            return {"position": position, "head": head}
        if time.monotonic() > deadline:
            raise SandboxError(
                f"the read model did not catch up within {timeout:g} s: {pending} event(s) "
                f"wait in outboxes, query is at position {position} of {head}; "
                "see: msshop status")
        time.sleep(0.01)


def verify(questioner: Questioner, timeout: float = 30.0) -> dict[str, Any]:
    """The replicated read model against the monolith join, for every user."""
    position = caught_up(questioner.client, timeout)
    truth = monolith.all_user_orders(databases(questioner.state))
    wrong: dict[int, list[str]] = {}
    for user_id, orders in truth.items():
        status, answer = questioner.client.exchange(
            "query", "GET", f"/user-orders/{user_id}?strategy=replicated")
        if status == 404:
            wrong[user_id] = ["the user is missing from the read model"]
        elif status != 200:
            raise ServiceError(f"query answered HTTP {status} for user {user_id}: "
                               f"{answer.get('error') if isinstance(answer, dict) else answer}")
        else:
            found = differences(orders, answer["orders"])
            if found:
                wrong[user_id] = found
    return {"users": len(truth), "orders": sum(len(o) for o in truth.values()),
            **position, "differences": wrong}
