"""Rungs 1 and 2: the answer composed at query time by calling the owners (API
composition), first right, then in a bounded number of calls."""

from __future__ import annotations

from collections import Counter

from msshop.contracts.answers import UserOrders
from msshop.contracts.errors import MsshopError
from msshop.contracts.spans import Span
from msshop.contracts.strategies import ReadStrategy
from msshop.instruments import monolith
from msshop.instruments.asking import Asked, databases
from msshop.instruments.challenges.arena import Arena, Judged
from msshop.instruments.challenges.findings import Finding, refusal
from msshop.instruments.challenges.sandbox import RUN_IT_YOURSELF
from msshop.instruments.checking import differences, network_stages
from msshop.instruments.traces.shape import summary

TIMEOUT = 5.0  # seconds an answer may take before it counts as none
CALLEES = ("users", "orders", "products")
MAX_STAGES = 2  # users and orders at once, then products
MAX_PER_CALLEE = 2  # requests each callee may get for one answer, at any number of orders
STAGE_SAMPLES = 3  # on a busy machine calls made at once can look sequential: fewest seen

# the likely cause of a difference, by the field that differs
CAUSES = {
    "the user": "is the user's own record asked for (GET /users/ID)?",
    "missing": "are all the user's orders asked for (GET /orders?user_id=)?",
    "should not be there": "are only this user's orders kept (user_id)?",
    "title": "is each title the product's own, looked up by product_id?",
    "unit_price": "unit_price is what the order was placed at, not the product's "
                  "price now",
    "quantity": "is each quantity the order's own?",
    "total": "total is quantity times unit price, in the shop's currency",
    "product_id": "is each product_id the order's own?",
}


def equal_to_monolith(arena: Arena) -> Judged:
    """Rung 1: every user's direct-call answer equals the monolith's."""
    judged = Judged(checked=[f"{len(arena.cast.users)} users' direct-call answers against "
                             "the monolith's join"])
    for user in arena.cast.users:
        if judged.given_up():
            break
        asked = _ask(arena, user, judged, "equal to the monolith")
        if asked is not None:
            judged.found(_wrong(arena, user, asked, "equal to the monolith"), asked.spans)
    return judged


def batched(arena: Arena) -> Judged:
    """Rung 2: right, and the requests and stages behind each answer bounded."""
    judged = Judged(checked=[
        f"{len(arena.cast.users)} users' direct-call answers: equal to the monolith's; "
        f"at most {MAX_PER_CALLEE} requests to each of {', '.join(CALLEES)} and "
        f"{MAX_STAGES} stages, counted in each answer's trace"])
    most: Counter[str] = Counter()
    # the most orders first: the clearest finding is the one shown first
    for user, orders in sorted(arena.cast.users.items(), key=lambda u: -u[1]):
        if judged.given_up():
            break
        asked = _ask(arena, user, judged, "bounded calls")
        if asked is None:
            continue
        judged.found(_wrong(arena, user, asked, "bounded calls"), asked.spans)
        received = requests_under(asked.spans)
        for callee in CALLEES:
            most[callee] = max(most[callee], received[callee])
        if orders and not any(received.values()):
            judged.found([Finding(
                "bounded calls", f"user {user}", "the calls to users, orders and products "
                "under the answer's trace", "no request under it reached them",
                "forward traceparent on each call (docs/protocol.md, Tracing)",
                trace_id=asked.trace_id)], asked.spans)
            continue
        too_many = [c for c in CALLEES if received[c] > MAX_PER_CALLEE]
        if too_many:
            callee = max(too_many, key=lambda c: received[c])
            judged.found([Finding(
                "bounded calls", f"user {user}",
                f"at most {MAX_PER_CALLEE} at any number of orders",
                f"{callee} got {received[callee]} requests for {orders} orders",
                "one call per product (N+1)? ask for many at once: GET /products?ids=1,2,3",
                _counted(received), asked.trace_id)], asked.spans)
            continue
        stages = _fewest_stages(arena, user, asked)
        if stages > MAX_STAGES:
            judged.found([Finding(
                "bounded calls", f"user {user}", f"at most {MAX_STAGES} stages",
                f"{stages} sequential network stages",
                "a products call per order makes a stage each: ask for all at once"
                if received["products"] > 1 else
                "users and orders do not depend on each other: ask both at once",
                _counted(received), asked.trace_id)], asked.spans)
    judged.figures["most_requests"] = dict(most)
    return judged


def requests_under(spans: list[Span]) -> Counter[str]:
    """How many requests each callee served under a trace (its server spans)."""
    return Counter(s["service"] for s in spans
                   if s["kind"] == "server" and s["service"] in CALLEES)


def _counted(received: Counter[str]) -> str:
    return "requests under the trace: " + ", ".join(f"{c} {received[c]}" for c in CALLEES)


def _fewest_stages(arena: Arena, user: int, asked: Asked) -> int:
    counted = [network_stages(asked.spans, summary(asked.spans))]
    while counted[-1] > MAX_STAGES and len(counted) < STAGE_SAMPLES:
        again = arena.questioner.ask(user, ReadStrategy.DIRECT_CALL)
        counted.append(network_stages(again.spans, summary(again.spans)))
    return min(counted)


def _ask(arena: Arena, user: int, judged: Judged, check: str) -> Asked | None:
    try:
        return arena.questioner.ask(user, ReadStrategy.DIRECT_CALL)
    except MsshopError as exc:
        said, trace_id = refusal(exc.message)
        judged.findings.append(Finding(check, f"user {user}", "an answer",
                                       f"no answer ({said})",
                                       f"did it crash or hang? {RUN_IT_YOURSELF}",
                                       trace_id=trace_id, unanswered=True))
        return None


def _wrong(arena: Arena, user: int, asked: Asked, check: str) -> list[Finding]:
    """What differs from the monolith's answer for `user`, one finding per difference."""
    truth, _ = monolith.user_orders(databases(arena.state), user)
    return one_per_user(check, user, compared(truth, asked.answer), asked.trace_id)


def one_per_user(check: str, user: int, found: list[tuple[str, str, str | None]],
                 trace_id: str) -> list[Finding]:
    """The first difference in a user's answer as its finding; the rest as its evidence."""
    if not found:
        return []
    (expected, actual, cause), rest = found[0], found[1:]
    evidence = None
    if rest:
        evidence = "also: " + "; ".join(said for _, said, _ in rest[:2]) + (
            f"; and {len(rest) - 2} more" if len(rest) > 2 else "")
    return [Finding(check, f"user {user}", expected, actual, cause, evidence, trace_id)]


def compared(truth: UserOrders, got: object, causes: dict[str, str] | None = None
             ) -> list[tuple[str, str, str | None]]:
    """(expected, actual, likely cause) for each way `got` differs from `truth`."""
    found: list[tuple[str, str, str | None]] = []
    buyer = got.get("user") if isinstance(got, dict) else None
    if not isinstance(buyer, dict):
        found.append(("the user's id, name and email", "no \"user\" in the answer",
                      (causes or CAUSES).get("the user")))
    else:
        for key in ("id", "name", "email"):
            want = truth["user"][key]
            if (have := buyer.get(key)) != want:
                found.append((f"{want!r}", f"the user's {key} is {have!r}",
                              (causes or CAUSES).get("the user")))
    orders = got.get("orders") if isinstance(got, dict) else None
    if not isinstance(orders, list):
        return [*found, ("a list of orders", "no \"orders\" list in the answer",
                         "see the answer's shape in docs/protocol.md")]
    if not all(isinstance(o, dict) and "order_id" in o for o in orders):
        return [*found, ("an order_id in every order", "an order without one",
                         "see the answer's shape in docs/protocol.md")]
    for said in differences(truth["orders"], orders, limit=3):
        cause = next((c for key, c in (causes or CAUSES).items()
                      if key != "the user" and key in said), None)
        found.append(_as_expected(said, cause))
    return found


def _as_expected(said: str, cause: str | None) -> tuple[str, str, str | None]:
    """checking.differences' words split as expected / actual."""
    if ", expected " in said:
        actual, expected = said.rsplit(", expected ", 1)
        return expected, actual, cause
    if said.endswith(" is missing"):
        return "it in the answer", said, cause
    if said.endswith(" should not be there"):
        return "no such order", said.replace(" should not be there", " is there"), cause
    return "the monolith's answer", said, cause
