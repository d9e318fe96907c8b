"""`msshop bench`'s writes across services (issue 26): for each write strategy, purchases
per second sustained and the time from the request to the purchase's outcome at a paced
rate.

- monolith: the CLI's one transaction over the three files, on one kept connection (a
  monolith keeps its own), one purchase after another: SQLite takes one writer at a time,
  so more clients would only queue for the lock.
- direct-call: POST /orders from CLIENTS connections; the answer is the outcome.
- saga: POST /orders?write=saga (202, pending), then GET /orders/{id}?wait_ms on the same
  connection until the order is confirmed or rejected: the outcome arrives after products,
  users and orders have each applied their step from the bus. Its sustained rate is the
  pipeline's: purchases sent as fast as orders takes them, decided per second
  (_saga_sustained).
- saga-orchestrated: the same, POST /orders?write=saga-orchestrated: orders' orchestrator
  sends TakeStock, then TakeCredit, each answered over the bus before the next.

Every purchase is of stock and credit the bench gave beforehand (none is refused); the
sustained rate counts the purchases that ended confirmed, per second of the run.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

from msshop.contracts.errors import SandboxError
from msshop.contracts.shop import OrderStatus
from msshop.contracts.strategies import WriteStrategy
from msshop.instruments.asking import databases
from msshop.instruments.bench import loadgen
from msshop.instruments.bench.report import Figures, WriteFigures
from msshop.instruments.checking import caught_up
from msshop.instruments.client import ShopClient
from msshop.instruments.monolith_write import buy_on, connected
from msshop.runtime.orchestrator.state import State

WRITE_RATE = 500  # purchases per second at which the outcome's latency is measured
OUTCOME_WAIT_MS = 10_000  # a saga's GET waits at most this long for the outcome
DECIDED_WITHIN = 120.0  # seconds the bench waits for its saga purchases to be decided
Summarize = Callable[[list[float]], Figures]


def measure_writes(state: State, user_id: int, products: int, seconds: float, clients: int,
                   summarize: Summarize) -> dict[str, WriteFigures]:
    """Each write strategy's figures, by its name, in WriteStrategy's order."""
    measured: dict[str, WriteFigures] = {}
    client = ShopClient(state, timeout=60)
    for strategy in WriteStrategy:
        if strategy is WriteStrategy.MONOLITH:
            sustained = _monolith(state, user_id, products, seconds, None)
        elif strategy.saga:
            sustained = _saga_sustained(state, strategy, user_id, products, seconds, clients)
        else:
            sustained = _served(state, strategy, user_id, products, seconds, clients, None)
        # the outcome's latency at rest: the sustained run's events (the read model's, the
        # relays') applied first, or the paced run would share the cores with them
        caught_up(client, timeout=DECIDED_WITHIN)
        if strategy is WriteStrategy.MONOLITH:
            paced = _monolith(state, user_id, products, seconds, WRITE_RATE)
        else:
            paced = _served(state, strategy, user_id, products, seconds, clients, WRITE_RATE)
        measured[strategy] = {
            "clients": 1 if strategy is WriteStrategy.MONOLITH else clients,
            "per_second": sustained.per_second, "confirmed": sustained.confirmed,
            "failed": sustained.failed, "target_per_second": WRITE_RATE,
            "paced_per_second": paced.per_second,
            "outcome_ms": summarize(paced.latencies_ms)}
    return measured


def _served(state: State, strategy: WriteStrategy, user_id: int, products: int,
            seconds: float, clients: int, rate: float | None, follow: bool = True
            ) -> loadgen.Result:
    """Purchases through orders from `clients` connections; with `follow`, a saga's
    outcome is waited for on the same connection and timed with its request."""
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
                       follow=outcome if follow and strategy.saga else None,
                       judge=confirmed if follow else loadgen.succeeded)


def _saga_sustained(state: State, strategy: WriteStrategy, user_id: int, products: int,
                    seconds: float, clients: int) -> loadgen.Result:
    """The rate the saga keeps up with: purchases sent as fast as orders takes them (each
    answered at once, pending), then the time until the last of them is decided, read from
    orders' file. Waiting for each outcome from 16 clients would measure its latency
    instead: a saga's purchase is asynchronous, and its capacity is how many the steps
    decide per second."""
    orders = Path(state.services["orders"].db)
    before = _last_order(orders)
    sent = _served(state, strategy, user_id, products, seconds, clients, None,
                   follow=False)
    deadline = time.monotonic() + DECIDED_WITHIN
    while (pending := _count(orders, before, OrderStatus.PENDING)) and \
            time.monotonic() < deadline:
        time.sleep(0.005)
    decided_at = time.monotonic()
    if pending:
        raise SandboxError(f"{pending:,} saga purchases of the bench were still pending "
                           f"{DECIDED_WITHIN:g} s after the last was sent; see: msshop status")
    confirmed = _count(orders, before, OrderStatus.CONFIRMED)
    return loadgen.Result(clients, decided_at - sent.started_at, confirmed,
                          sent.failed + sent.confirmed - confirmed, [])


def _last_order(orders: Path) -> int:
    with closing(sqlite3.connect(f"file:{quote(str(orders))}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT coalesce(max(id), 0) FROM orders").fetchone()[0])


def _count(orders: Path, after: int, status: OrderStatus) -> int:
    """Orders after id `after` in `status` (the bench's own: the shop is its own)."""
    with closing(sqlite3.connect(f"file:{quote(str(orders))}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM orders WHERE id > ? AND status = ?",
                                (after, status.value)).fetchone()[0])


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
