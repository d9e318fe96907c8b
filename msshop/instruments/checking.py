"""Checking answers against the truth: `compare` (every strategy side by side, each against
the monolith's join) and `verify` (the whole read model against it, once caught up)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from msshop.contracts.answers import CONFIRMED, Freshness, OrderLine
from msshop.contracts.errors import MsshopError, SandboxError, ServiceError
from msshop.contracts.spans import Span
from msshop.contracts.strategies import ReadStrategy
from msshop.instruments import invariant, monolith, waiting
from msshop.instruments.asking import Questioner, databases
from msshop.instruments.client import Refused, ShopClient
from msshop.instruments.traces.shape import Summary, summary

COMPARED = ((ReadStrategy.MONOLITH, "batched"), (ReadStrategy.DIRECT_CALL, "batched"),
            (ReadStrategy.DIRECT_CALL, "naive"), (ReadStrategy.REPLICATED, "batched"))


# What an order line that does not say a field means: a program of your own written before
# issue 26 sends no status, and every order it knows of was confirmed.
UNSAID = {"status": CONFIRMED}
# What a saga's order in flight may differ in, seen at two moments: its status, the reason,
# and the price (a pending order's is 0 until products says it).
SETTLING = frozenset(("status", "reason", "unit_price", "total"))
PENDING = "pending"


def differences(expected: list[OrderLine], got: list[OrderLine], limit: int = 5) -> list[str]:
    """What differs between two answers' order lists, in words (empty when equal)."""
    want = {o["order_id"]: o for o in expected}
    have = {o["order_id"]: o for o in got}
    found = [f"order {oid} is missing" for oid in want if oid not in have]
    # an order twice in the answer (applied again when handed over again) is one in `have`
    found += [f"order {oid} appears {'twice' if n == 2 else f'{n} times'}"
              for oid, n in Counter(o["order_id"] for o in got).items() if n > 1]
    found += [f"order {oid} should not be there" for oid in have if oid not in want]
    for oid in want.keys() & have.keys():
        for key, value in want[oid].items():
            if (said := have[oid].get(key, UNSAID.get(key))) != value:
                found.append(f"order {oid} {key} is {said!r}, expected {value!r}")
    if len(found) > limit:
        found = [*found[:limit], f"and {len(found) - limit} more"]
    return found


def settling(expected: list[OrderLine], got: list[OrderLine]) -> dict[int, str]:
    """The orders two answers see at different moments of their saga: pending in one,
    confirmed or rejected in the other, and alike in all else but SETTLING (order id ->
    in words). Not a wrong answer: `expected` (the monolith's) was read first, so an
    answer still pending is behind, and one already decided read it after the outcome."""
    want = {o["order_id"]: o for o in expected}
    found: dict[int, str] = {}
    for order in got:
        truth = want.get(order["order_id"])
        if truth is None:
            continue
        was, now = truth["status"], order.get("status", CONFIRMED)
        if was == now or PENDING not in (was, now) or any(
                order.get(key) != value for key, value in truth.items()
                if key not in SETTLING):
            continue
        oid = order["order_id"]
        found[oid] = (f"order {oid} is pending here, {was} in orders: its outcome is not "
                      "applied here yet" if now == PENDING else
                      f"order {oid} is {now} here, pending when the monolith read it: "
                      "decided in between")
    return found


@dataclass(frozen=True)
class Compared:
    """One strategy's row in `msshop compare`; `error` set means it failed."""

    strategy: str  # with its fanout for direct-call, e.g. "direct-call (naive)"
    error: str | None = None
    equal: bool = False  # equal to the monolith's answer
    differences: tuple[str, ...] = ()
    # orders seen at another moment of their saga than the monolith's (`settling`): if
    # these are all that differs, the answer is behind (or newer), not wrong
    in_flight: tuple[str, ...] = ()
    behind: bool = False  # some are pending here that orders has decided
    orders: int = 0
    latency_ms: float = 0.0
    sequential_hops: int = 0
    services: tuple[str, ...] = ()
    databases: dict[str, list[str]] | None = None
    rows_read: int = 0
    freshness: Freshness | None = None
    trace_id: str | None = None
    spans: tuple[Span, ...] = ()


def compare(questioner: Questioner, user_id: int) -> list[Compared]:
    """Every strategy side by side, each checked against the monolith's answer."""
    rows: list[Compared] = []
    truth: list[OrderLine] | None = None
    for strategy, fanout in COMPARED:
        label = (f"{strategy} ({fanout})" if strategy is ReadStrategy.DIRECT_CALL
                 else str(strategy))
        try:
            asked = questioner.ask(user_id, strategy, fanout)
        except MsshopError as exc:
            rows.append(Compared(label, error=exc.message))
            continue
        orders = asked.answer["orders"]
        if truth is None and strategy is ReadStrategy.MONOLITH:
            truth = orders
        flux = settling(truth, orders) if truth is not None else {}
        found = differences([o for o in truth if o["order_id"] not in flux],
                            [o for o in orders if o["order_id"] not in flux]
                            ) if truth is not None else []
        shape = summary(asked.spans)
        rows.append(Compared(
            label, equal=truth is not None and not found and not flux,
            differences=tuple(found), in_flight=tuple(flux.values()),
            behind=any(o.get("status") == PENDING for o in orders if o["order_id"] in flux),
            orders=len(orders), latency_ms=asked.latency_ms,
            sequential_hops=network_stages(asked.spans, shape),
            services=tuple(shape["services"]), databases=shape["databases"],
            rows_read=shape["rows_read"], freshness=asked.answer.get("freshness"),
            trace_id=asked.trace_id, spans=tuple(asked.spans)))
    return rows


def network_stages(spans: list[Span], shape: Summary) -> int:
    """Sequential network stages behind the question (the CLI's own call not counted)."""
    stages = int(shape["sequential_hops"])
    root = next((s for s in spans if s["parent_id"] is None), None)
    return stages - 1 if root is not None and root["kind"] == "client" else stages


@dataclass(frozen=True)
class CaughtUp:
    position: int
    head: int


def caught_up(client: ShopClient, timeout: float) -> CaughtUp:
    """Wait until every outbox is empty and the read model has applied the bus's head
    (`msshop wait --for caught-up`'s loop, looking every 10 ms). A service it needs that
    is stopped or crashed ends the wait at once: nobody is there to start it again."""
    waited = waiting.until(client, "caught-up", waiting.REPLICATION, timeout, poll=0.01,
                           patient=False)
    if waited["outcome"] == "service-down":
        raise SandboxError("the read model cannot catch up: " + "; ".join(waited["missing"])
                           + "; see: msshop status")
    if not waited["reached"]:
        raise SandboxError(f"the read model did not catch up within {timeout:g} s: "
                           + "; ".join(waited["missing"]) + "; see: msshop status")
    head = waited.get("bus_head") or 0
    return CaughtUp(head, head)


@dataclass(frozen=True)
class Verified:
    """`msshop verify`: users and orders compared at a bus position; who differs, how; and
    the invariant's breaches (stock and credit across services), one line each."""

    users: int
    orders: int
    position: int
    head: int
    differences: dict[int, list[str]]
    invariant: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.differences and not self.invariant


def verify(questioner: Questioner, timeout: float = 30.0) -> Verified:
    """The replicated read model against the monolith join, for every user."""
    at = caught_up(questioner.client, timeout)
    truth = monolith.all_user_orders(databases(questioner.state))
    people = monolith.all_users(databases(questioner.state))
    wrong: dict[int, list[str]] = {}
    for user_id, orders in truth.items():
        # from the file: a kept answer would hide a read model changed behind its back
        answer = questioner.client.user_orders(user_id, ReadStrategy.REPLICATED, kept=False)
        if isinstance(answer, Refused) and answer.status == 404:
            wrong[user_id] = ["the user is missing from the read model"]
        elif isinstance(answer, Refused):
            raise ServiceError(f"query answered HTTP {answer.status} for user {user_id}: "
                               f"{answer.error}")
        else:
            found = [f"the user's {key} is {answer['user'][key]!r}, expected "
                     f"{people[user_id][key]!r}" for key in ("name", "email")
                     if user_id in people and answer["user"][key] != people[user_id][key]]
            found += differences(orders, answer["orders"])
            if found:
                wrong[user_id] = found
    return Verified(len(truth), sum(len(o) for o in truth.values()), at.position, at.head,
                    wrong, tuple(invariant.breaches(databases(questioner.state))))
