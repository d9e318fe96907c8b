"""`msshop bench`'s writes across services (issue 26): for each write strategy, purchases
per second sustained and the time from the request to the purchase's outcome at a paced
rate.

- monolith: the CLI's one transaction over the three files, on one kept connection (a
  monolith keeps its own), one purchase after another: SQLite takes one writer at a time,
  so more clients would only queue for the lock.
- direct-call: POST /orders from CLIENTS connections; the answer is the outcome.
- saga: POST /orders?write=saga (202, pending), then GET /orders/{id}?wait_ms on the same
  connection until the order is confirmed or rejected: the outcome arrives after products,
  users and orders have each applied their step from the bus.

Every purchase is of stock and credit the bench gave beforehand (none is refused); the
sustained rate counts the purchases that ended confirmed, per second of the run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from msshop.contracts.strategies import WriteStrategy
from msshop.instruments.asking import databases
from msshop.instruments.bench import loadgen
from msshop.instruments.bench.report import Figures, WriteFigures
from msshop.instruments.monolith_write import buy_on, connected
from msshop.runtime.orchestrator.state import State

WRITE_RATE = 500  # purchases per second at which the outcome's latency is measured
OUTCOME_WAIT_MS = 10_000  # a saga's GET waits at most this long for the outcome
Summarize = Callable[[list[float]], Figures]


def measure_writes(state: State, user_id: int, products: int, seconds: float, clients: int,
                   summarize: Summarize) -> dict[str, WriteFigures]:
    """Each write strategy's figures, by its name, in WriteStrategy's order."""
    measured: dict[str, WriteFigures] = {}
    for strategy in WriteStrategy:
        if strategy is WriteStrategy.MONOLITH:
            sustained = _monolith(state, user_id, products, seconds, None)
            paced = _monolith(state, user_id, products, seconds, WRITE_RATE)
        else:
            sustained = _served(state, strategy, user_id, products, seconds, clients, None)
            paced = _served(state, strategy, user_id, products, seconds, clients, WRITE_RATE)
        measured[strategy] = {
            "clients": 1 if strategy is WriteStrategy.MONOLITH else clients,
            "per_second": sustained.per_second, "confirmed": sustained.confirmed,
            "failed": sustained.failed, "target_per_second": WRITE_RATE,
            "paced_per_second": paced.per_second,
            "outcome_ms": summarize(paced.latencies_ms)}
    return measured


def _served(state: State, strategy: WriteStrategy, user_id: int, products: int,
            seconds: float, clients: int, rate: float | None) -> loadgen.Result:
    tag = time.time()
    path = "/orders" if strategy is WriteStrategy.DIRECT_CALL else f"/orders?write={strategy}"

    def purchase(k: int, n: int) -> tuple[str, str, bytes]:
        return "POST", path, json.dumps({
            "user_id": user_id, "product_id": 1 + (k + n) % products,
            "request_id": f"writes-{strategy}-{tag}-{k}-{n}"}).encode()

    def outcome(answer: bytes) -> tuple[str, str, bytes | None] | None:
        order = json.loads(answer)
        if order.get("status") != "pending":
            return None
        return "GET", f"/orders/{order['id']}?wait_ms={OUTCOME_WAIT_MS}", None

    def confirmed(status: int, answer: bytes) -> bool:
        return status < 300 and json.loads(answer).get("status", "confirmed") == "confirmed"

    orders = state.services["orders"]
    return loadgen.run(state.host, orders.port, purchase, clients, seconds, rate,
                       follow=outcome if strategy is WriteStrategy.SAGA else None,
                       judge=confirmed)


def _monolith(state: State, user_id: int, products: int, seconds: float,
              rate: float | None) -> loadgen.Result:
    """One purchase after another in the CLI's process, paced to `rate` if given."""
    result = loadgen.Result(1, 0.0, 0, 0, [])
    tag = time.time()
    interval = 1 / rate if rate else 0.0
    with connected(databases(state)) as conn:
        started = time.perf_counter()
        next_at = started
        n = 0
        while (now := time.perf_counter()) - started < seconds:
            if interval:
                if now < next_at:
                    time.sleep(next_at - now)  # pacing, not waiting for a condition
                next_at += interval
            n += 1
            began = time.perf_counter()
            written = buy_on(conn, user_id, 1 + n % products, 1, f"writes-monolith-{tag}-{n}")
            result.latencies_ms.append((time.perf_counter() - began) * 1000)
            if written.order is not None:
                result.confirmed += 1
            else:
                result.failed += 1
        result.seconds = time.perf_counter() - started
    return result
