"""`msshop sagas`: the sagas not finished, each with the step it has reached and who it
waits for (issue 27), of both sagas.

An orchestrated saga is where its orchestrator wrote it: orders.db's `sagas` (state, the
command it waits for the reply to, its deadline, why it is being undone), one row, one
file. A choreographed saga has no single place that knows where it is: orders knows its
order is pending, products which stock it took or gave back, users which credit it took.
So, as `verify` does, this reads the three files at once (read-only, ATTACHed:
monolith.py), which no service may: the picture a choreography does not keep, put together
from outside. That difference is the lesson.

Each pending order's step, from what the participants have done for it (their `saga_steps`
and ledgers):

    products has not applied its OrderPlaced      waits for products to take the stock
    products refused the stock                    waits for orders to reject it
    products took it; users has not answered      waits for users to take the credit
    users took the credit                         waits for orders to confirm it
    users refused; products has not given back    waits for products to give the stock back
    products gave the stock back                  waits for orders to reject it
"""

from __future__ import annotations

import time
from pathlib import Path

from msshop.contracts import events
from msshop.contracts.outcomes import SagasReport, UnfinishedSaga
from msshop.contracts.saga_progress import orchestrated_step, step_reached
from msshop.contracts.sagas import UNFINISHED_SQL, SagaState
from msshop.contracts.shop import OrderStatus
from msshop.contracts.strategies import WriteStrategy
from msshop.instruments.monolith import attached

SHOWN = 50  # sagas listed, the oldest first; the rest are counted

# What each participant has done for a pending order: a step applied (saga_steps, keyed
# by the order and the event it applied), and whether its ledger holds a take for the
# purchase (1 held, 0 given back, NULL none).
_PENDING = f"""
SELECT o.id, o.request_id, o.user_id, o.product_id, o.quantity, o.created_at,
  EXISTS (SELECT 1 FROM products.saga_steps AS s WHERE s.order_id = o.id
          AND s.step = '{events.ORDER_PLACED}'),
  (SELECT t.given_back_at IS NULL FROM products.stock_takes AS t
   WHERE t.purchase = o.request_id),
  EXISTS (SELECT 1 FROM users.saga_steps AS s WHERE s.order_id = o.id
          AND s.step = '{events.STOCK_TAKEN}'),
  (SELECT t.given_back_at IS NULL FROM users.credit_takes AS t
   WHERE t.purchase = o.request_id),
  EXISTS (SELECT 1 FROM products.saga_steps AS s WHERE s.order_id = o.id
          AND s.step = '{events.CREDIT_REFUSED}')
FROM orders.orders AS o WHERE o.status = ?
  AND NOT EXISTS (SELECT 1 FROM orders.sagas AS s WHERE s.order_id = o.id)
ORDER BY o.id LIMIT ?
"""
# An orchestrated one's: its row, in orders.db alone
_ORCHESTRATED = f"""
SELECT s.order_id, s.purchase, o.user_id, o.product_id, o.quantity, s.started_at, s.state,
  s.deadline, s.reason
FROM orders.sagas AS s JOIN orders.orders AS o ON o.id = s.order_id
WHERE s.{UNFINISHED_SQL} ORDER BY s.started_at LIMIT ?
"""


def unfinished(databases: dict[str, Path], now: float | None = None) -> SagasReport:
    """The sagas still pending (both kinds), oldest first (at most SHOWN), with how many
    there are."""
    at = time.time() if now is None else now
    with attached(databases) as conn:
        (count,) = conn.execute("SELECT count(*) FROM orders.orders WHERE status = ?",
                                (OrderStatus.PENDING.value,)).fetchone()
        orchestrated = [_orchestrated(row, at) for row in
                        conn.execute(_ORCHESTRATED, (SHOWN,)).fetchall()]
        choreographed = [_saga(row, at) for row in
                         conn.execute(_PENDING, (OrderStatus.PENDING.value, SHOWN)).fetchall()]
    sagas = sorted(orchestrated + choreographed, key=lambda s: s["order_id"])[:SHOWN]
    return {"count": count, "sagas": sagas, "shown": len(sagas)}


def _orchestrated(row: tuple[int | str | float | None, ...], now: float) -> UnfinishedSaga:
    (order_id, purchase, user_id, product_id, quantity, started_at, state, deadline,
     reason) = row
    assert isinstance(started_at, float)
    saga = SagaState(str(state))
    step = orchestrated_step(saga, deadline if isinstance(deadline, float) else None,
                             str(reason) if reason else None, now)
    return {"order_id": int(order_id or 0), "purchase": str(purchase),
            "user_id": int(user_id or 0), "product_id": int(product_id or 0),
            "quantity": int(quantity or 0), "strategy": WriteStrategy.SAGA_ORCHESTRATED.value,
            "state": saga.value, "step": step, "waits_for": saga.waits_for or "orders",
            "age_seconds": round(max(0.0, now - started_at), 3)}


def _saga(row: tuple[int | str | float | None, ...], now: float) -> UnfinishedSaga:
    (order_id, purchase, user_id, product_id, quantity, created_at, stock_step, stock_held,
     credit_step, credit_held, given_back_step) = row
    assert isinstance(created_at, float)
    assert stock_held is None or isinstance(stock_held, int)
    assert credit_held is None or isinstance(credit_held, int)
    step, waits_for = step_reached(bool(stock_step), stock_held, bool(credit_step),
                                   credit_held, bool(given_back_step))
    return {"order_id": int(order_id or 0), "purchase": str(purchase),
            "user_id": int(user_id or 0), "product_id": int(product_id or 0),
            "quantity": int(quantity or 0), "strategy": WriteStrategy.SAGA.value,
            "state": OrderStatus.PENDING.value,
            "step": step, "waits_for": waits_for,
            "age_seconds": round(max(0.0, now - created_at), 3)}
