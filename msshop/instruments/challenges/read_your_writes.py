"""Rung 7: `after=POSITION&wait_ms=W` honoured. An order placed, asked for at once with
after= its bus position: the answer holds it. With the consumer held off the bus, the
honest answer is a 503 after the wait, never an answer without the order; once the
consumer is back, the order is there within the wait."""

from __future__ import annotations

import time

from msshop.contracts.errors import MsshopError, SandboxError
from msshop.instruments.challenges.arena import Arena, Judged
from msshop.instruments.challenges.findings import Finding, refusal
from msshop.instruments.challenges.replicas import (
    applied_head,
    bus_link,
    held_off_bus,
)

WAIT_MS = 2000  # the wait asked for, as the ladder states it
HELD_WAIT_MS = 300  # the wait asked for while the consumer cannot reach the bus
HONEST = (503, 504)  # "the position not applied within wait_ms" (docs/protocol.md)
ASKED = 3  # users who place an order and ask for it at once
HELD_OFF_S = 10.0
CHECK = "read-your-writes"
CAUSE = "does it wait until it has applied POSITION, and answer 503 if it cannot?"


def read_your_writes(arena: Arena) -> Judged:
    judged = Judged(checked=[
        f"{ASKED} users each place an order and ask at once with after= its position and "
        f"wait_ms={WAIT_MS}: the order must be in the answer",
        f"with your consumer held off the bus, after= a new order's position and "
        f"wait_ms={HELD_WAIT_MS}: an answer must hold it, or be a 503 after the wait; "
        f"once it is back, the order must be there within wait_ms={WAIT_MS}"])
    if not applied_head(arena, judged, CHECK):
        return judged
    buyers = [u for u, orders in arena.cast.users.items() if orders][:ASKED + 1]
    for user in buyers[:ASKED]:
        order, position = _placed(arena, user)
        _asked(arena, judged, user, order, position, WAIT_MS, may_wait_out=False)
    user = buyers[-1]
    try:
        if not held_off_bus(arena, HELD_OFF_S):
            judged.unknown.append(f"could not hold your consumer off the bus within "
                                  f"{HELD_OFF_S:g} s (its /health consumer.bus_error "
                                  "stayed empty)")
            return judged
        order, position = _placed(arena, user)
        _asked(arena, judged, user, order, position, HELD_WAIT_MS, may_wait_out=True)
    finally:
        bus_link(arena, None)
    _asked(arena, judged, user, order, position, WAIT_MS, may_wait_out=False)
    return judged


def _placed(arena: Arena, user: int) -> tuple[int, int]:
    """(the order's id, its bus position) of an order placed for `user`."""
    order, _ = arena.client.buy(user, arena.cast.products[0], wait_published_ms=WAIT_MS)
    event = order.get("event")
    if event is None or event["position"] is None:
        raise SandboxError(f"order {order['id']} did not reach the bus within {WAIT_MS} ms")
    return order["id"], event["position"]


def _asked(arena: Arena, judged: Judged, user: int, order: int, position: int,
           wait_ms: int, may_wait_out: bool) -> None:
    """Ask `user`'s answer after=`position`: it must hold `order`, or (`may_wait_out`)
    be an honest refusal once the wait is over."""
    asked = f"after={position:,}&wait_ms={wait_ms}"
    expected = f"order {order} in it" + (f", or a 503 after {wait_ms} ms" if may_wait_out
                                         else f" within {wait_ms} ms")
    started = time.monotonic()
    try:
        status, answer = arena.client.exchange(
            "query", "GET", f"/user-orders/{user}?strategy=replicated&after={position}"
                            f"&wait_ms={wait_ms}")
    except MsshopError as exc:
        said, _ = refusal(exc.message)
        judged.findings.append(Finding(CHECK, f"user {user} ({asked})", expected,
                                       f"no answer ({said})", CAUSE, unanswered=True))
        return
    took_ms = (time.monotonic() - started) * 1000
    if status == 200:
        orders = answer.get("orders") if isinstance(answer, dict) else None
        if isinstance(orders, list) and any(isinstance(o, dict) and o.get("order_id") == order
                                            for o in orders):
            return
        freshness = answer.get("freshness") if isinstance(answer, dict) else None
        held = freshness.get("position") if isinstance(freshness, dict) else None
        judged.findings.append(Finding(
            CHECK, f"user {user} ({asked})", expected,
            f"an answer without it after {took_ms:.0f} ms"
            + (f", its freshness at position {held:,}" if isinstance(held, int) else ""),
            CAUSE))
        return
    error = answer.get("error") if isinstance(answer, dict) else None
    said = f"HTTP {status}" + (f" ({str(error).split('; ', 1)[0]})" if error else "")
    if not may_wait_out:
        judged.findings.append(Finding(
            CHECK, f"user {user} ({asked})", expected, f"{said} after {took_ms:.0f} ms",
            "your consumer could reach the bus: is the order applied, and the wait woken "
            "when it is?", unanswered=True))
    elif status not in HONEST:
        judged.findings.append(Finding(
            CHECK, f"user {user} ({asked})", expected, said,
            "a position not applied within wait_ms is a 503 (docs/protocol.md)"))
    elif took_ms < wait_ms * 0.8:
        judged.findings.append(Finding(
            CHECK, f"user {user} ({asked})", expected,
            f"{said} after {took_ms:.0f} ms, before the wait was over", CAUSE))
