"""A write followed to the read model (`msshop buy --trace`, `msshop signup --trace`).

The CLI sends the write with a traceparent whose sampled flag asks to follow it. The
service's events then carry the span that made them (`Event.parent_span`), and each step
of the asynchronous part records a span in the same trace: the relay's publish (with the
position the bus gave), the bus's append (with the sandbox's log), and the query service's
apply into its read model, with the replication lag. The CLI waits until the read model
has the write (bounded), gathers every service's spans and stores the trace like a
question's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from msshop.contracts.errors import MsshopError
from msshop.contracts.kinds import Kind
from msshop.contracts.shop import User
from msshop.contracts.spans import Span, make_span, traceparent
from msshop.contracts.strategies import WriteStrategy
from msshop.instruments import purchase
from msshop.instruments.asking import Questioner
from msshop.instruments.checking import caught_up
from msshop.instruments.traces.store import StoredTrace
from msshop.runtime.orchestrator.state import State

APPLIED_WAIT = 10.0  # seconds to wait for the read model to apply the write


@dataclass(frozen=True)
class Journey:
    trace_id: str
    spans: list[Span]
    applied: bool  # the read model has the write (False: still on its way, e.g. bus down)
    lag_ms: float | None  # commit at the source to applied in the read model
    unsaved: str | None = None  # why the trace could not be stored (a full disk), if so


@dataclass(frozen=True)
class Bought:
    bought: purchase.Bought  # what became of the purchase
    journey: Journey


@dataclass(frozen=True)
class SignedUp:
    user: User
    journey: Journey


def buy(state: State, user_id: int, product_id: int, quantity: int,
        strategy: WriteStrategy = WriteStrategy.DIRECT_CALL, wait: float = APPLIED_WAIT
        ) -> Bought:
    """A purchase followed to the read model. A saga's is followed through every
    participant: products', users' and orders' steps record their spans in its trace, and
    its outcome is waited for (up to `wait` s) before the trace is gathered."""
    root = _root("buy", "orders", "/orders")
    questioner = Questioner(state)
    client = questioner.client
    if strategy.saga:
        bought = _timed(root, lambda: purchase.by_saga(
            client, user_id, product_id, quantity, None, wait, traceparent(root), strategy))
    else:
        order, created = _timed(root, lambda: client.buy(
            user_id, product_id, quantity, wait_published_ms=1000,
            traceparent=traceparent(root)))
        bought = purchase.Bought(strategy, "confirmed", order, created)
    journey = _followed(questioner, root, "buy", user_id)
    return Bought(bought, journey)


def signup(state: State, email: str, name: str, credit: float | None = None) -> SignedUp:
    root = _root("signup", "users", "/users")
    questioner = Questioner(state)
    user = _timed(root, lambda: questioner.client.signup(email, name, traceparent(root),
                                                         credit))
    return SignedUp(user, _followed(questioner, root, "signup", int(user["id"])))


def _root(name: str, service: str, route: str) -> Span:
    return make_span("cli", name, "client", {"peer.service": service, "http.route": route})


def _timed(root: Span, call: Any) -> Any:
    began = time.perf_counter()
    try:
        return call()
    except MsshopError:
        root["status"] = "error"
        raise
    finally:
        root["duration_ms"] = (time.perf_counter() - began) * 1000


def _followed(questioner: Questioner, root: Span, what: str, user_id: int) -> Journey:
    """Wait (bounded) until the read model has the write, then gather and store its trace."""
    try:
        caught_up(questioner.client, timeout=APPLIED_WAIT)
        applied = True
    except MsshopError:
        applied = False  # the bus or the query service is down: show what got that far
    trace_id = str(root["trace_id"])
    spans = [root, *questioner.gather(trace_id)]
    unsaved = questioner.traces.save(StoredTrace(trace_id, what, "write", user_id, None,
                                                 spans, kind="write"))
    lags = [s["attributes"]["msshop.lag_ms"] for s in spans
            if s["service"] == "query" and "msshop.lag_ms" in (s.get("attributes") or {})]
    # a program of your own as the query service may record no apply span (the contract
    # does not ask for one): caught up is then all that is known, and the lag is not
    query = questioner.client.state.services.get("query")
    spans_optional = query is not None and query.kind == Kind.EXECUTABLE
    return Journey(trace_id, spans, applied and (bool(lags) or spans_optional),
                   max(lags) if lags else None, unsaved)
