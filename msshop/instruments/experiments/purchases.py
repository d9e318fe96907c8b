"""The purchases workload (issue 27): every write strategy buys at the same steady rate, open
loop, each with a cast of its own (users and products no other strategy buys), under the
same faults at the same moments: side by side, and each judged on its own.

- monolith: the CLI's one transaction over the three files (monolith_write.py), on one
  connection in a thread of its own (a monolith keeps one), one purchase at a time;
- direct-call: POST /orders; the answer is the outcome (409/422: rejected);
- saga, saga-orchestrated: POST /orders?write=…, answered pending (202); the order is then
  followed (GET /orders/{id}?wait_ms=) until it ends: its outcome and when it came.

A purchase with no answer, or a 5xx, is `failed`: the client cannot tell what happened (the
checker then only asks that nothing leaked). Twice a second, orders.db is read (read-only,
as `verify` does) for each strategy's orders pending and the stock they hold: the
invariant's slack over time.

Times are seconds from the start of the load (the event loop's monotonic clock).
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from msshop.contracts.errors import MsshopError
from msshop.contracts.progress import Tally
from msshop.contracts.strategies import WriteStrategy
from msshop.instruments import monolith_write
from msshop.instruments.experiments.report import Answer
from msshop.runtime.fd_limit import raise_fd_limit
from msshop.runtime.platform.wire import Client, ConnectFailed, address_of

TIMEOUT = 5.0  # a purchase unanswered this long is failed
FOLLOW_MS = 2000  # each GET of a pending order waits up to this long for its outcome
SAMPLE_EVERY = 0.5
JSON = {"content-type": "application/json"}
REFUSED = (409, 422)  # out of stock, not enough credit, no such user or product


@dataclass(frozen=True)
class Cast:
    """The users and products one strategy buys with (no other strategy touches them)."""

    users: tuple[int, ...]
    products: tuple[int, ...]


@dataclass
class Bought:
    strategy: WriteStrategy
    t: float  # sent
    request_id: str
    answered: Answer  # what the first answer said
    order_id: int | None
    ended: Answer  # what it finally was (pending: still, when the run stopped following)
    ended_t: float | None  # when the client learnt the outcome (None: it did not)
    reason: str | None = None

    @property
    def outcome_ms(self) -> float | None:
        return None if self.ended_t is None else (self.ended_t - self.t) * 1000


@dataclass(frozen=True)
class Slack:
    t: float
    pending: dict[str, int]  # by strategy: its orders pending
    held: dict[str, int]  # by strategy: the stock they hold


@dataclass
class Purchases:
    bought: list[Bought] = field(default_factory=list)
    slack: list[Slack] = field(default_factory=list)


class PurchaseLoad:
    def __init__(self, orders_url: str, databases: dict[str, Path],
                 casts: dict[WriteStrategy, Cast], rate: float, quantity: int,
                 tag: str) -> None:
        self._orders = address_of(orders_url)
        self.databases = databases
        self.casts = casts
        self.rate = rate
        self.quantity = quantity
        self.tag = tag
        self.recorded = Purchases()
        self.started = 0.0
        self._following: set[asyncio.Task[None]] = set()
        self._owner = {product: str(s) for s, cast in casts.items() for product in
                       cast.products}
        raise_fd_limit()  # open loop: with orders down or slow, requests pile up
        self._client = Client()
        self._random = random.Random(11)
        # the monolith's purchases: one connection, in the one thread that uses it
        self._monolith = ThreadPoolExecutor(1, thread_name_prefix="monolith")
        self._local = threading.local()

    def now(self) -> float:
        return time.monotonic() - self.started

    def tally(self, second: int) -> dict[str, Tally]:
        """The purchases sent in `second`, by strategy: answered (confirmed, rejected or
        pending) and failed, so far."""
        counted = {str(strategy): Tally(0, 0) for strategy in self.casts}
        for bought in self.recorded.bought:
            if second <= bought.t < second + 1:
                name = str(bought.strategy)
                counted[name] = counted[name].add(bought.answered != "failed")
        return counted

    async def run(self, seconds: float) -> None:
        self.started = time.monotonic()
        sampler = asyncio.create_task(self._sample_until(seconds))
        await asyncio.gather(*(self._every(seconds, strategy) for strategy in self.casts))
        await sampler

    async def settle(self, timeout: float) -> None:
        """Give the pending purchases' followers up to `timeout` to see their outcomes,
        then stop them."""
        deadline = time.monotonic() + timeout
        while self._following and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for task in list(self._following):
            task.cancel()
        await asyncio.gather(*self._following, return_exceptions=True)
        self._client.close()
        self._monolith.submit(self._close_monolith).result()
        self._monolith.shutdown()

    async def _every(self, seconds: float, strategy: WriteStrategy) -> None:
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        while (at := n / self.rate) < seconds:
            delay = at - self.now()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._buy(n, strategy))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)

    async def _buy(self, n: int, strategy: WriteStrategy) -> None:
        cast = self.casts[strategy]
        user = cast.users[n % len(cast.users)]
        product = cast.products[self._random.randrange(len(cast.products))]
        key = f"{self.tag}-{strategy}-{n}"
        sent = self.now()
        if strategy is WriteStrategy.MONOLITH:
            answered, order_id, reason = await asyncio.get_running_loop().run_in_executor(
                self._monolith, self._monolith_buy, user, product, key)
        else:
            path = "/orders" if strategy is WriteStrategy.DIRECT_CALL else \
                f"/orders?write={strategy}"
            status, answer = await self._call("POST", path, {
                "user_id": user, "product_id": product, "quantity": self.quantity,
                "request_id": key})
            answered, order_id, reason = _classified(status, answer)
        bought = Bought(strategy, sent, key, answered, order_id, answered,
                        None if answered in ("pending", "failed") else self.now(), reason)
        self.recorded.bought.append(bought)
        if answered == "pending" and order_id is not None:
            task = asyncio.create_task(self._follow(bought))
            self._following.add(task)
            task.add_done_callback(self._following.discard)

    async def _follow(self, bought: Bought) -> None:
        """Ask for a pending order until it ends (through orders' own outages)."""
        while True:
            status, answer = await self._call(
                "GET", f"/orders/{bought.order_id}?wait_ms={FOLLOW_MS}",
                timeout=FOLLOW_MS / 1000 + TIMEOUT)
            if status == 200 and isinstance(answer, dict) and \
                    answer.get("status") in ("confirmed", "rejected"):
                bought.ended = answer["status"]
                bought.ended_t = self.now()
                bought.reason = answer.get("reason")
                return
            if status != 200:
                await asyncio.sleep(0.1)  # orders down: ask again shortly

    async def _call(self, method: str, path: str, body: Any = None,
                    timeout: float = TIMEOUT) -> tuple[int, Any]:
        host, port = self._orders
        data, headers = (None, None) if body is None else (json.dumps(body).encode(), JSON)
        try:
            async with asyncio.timeout(timeout):
                status, content = await self._client.request(method, host, port, path, data,
                                                             headers)
        except (ConnectFailed, TimeoutError, OSError):
            return 0, None
        try:
            return status, json.loads(content) if content else None
        except ValueError:
            return status, None

    def _monolith_buy(self, user: int, product: int, key: str
                      ) -> tuple[Answer, int | None, str | None]:
        """In the monolith's thread: one transaction over the three files."""
        try:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                self._local.stack = ExitStack()
                conn = self._local.conn = self._local.stack.enter_context(
                    monolith_write.connected(self.databases))
            written = monolith_write.buy_on(conn, user, product, self.quantity, key)
        except (MsshopError, sqlite3.Error) as exc:
            return "failed", None, str(exc)
        if written.order is None:
            return "rejected", None, written.reason
        return "confirmed", int(written.order["id"]), None

    def _close_monolith(self) -> None:
        stack = getattr(self._local, "stack", None)
        if stack is not None:
            stack.close()

    async def _sample_until(self, seconds: float) -> None:
        while (t := self.now()) < seconds:
            pending, held = await asyncio.to_thread(self._pending_orders)
            self.recorded.slack.append(Slack(t, pending, held))
            await asyncio.sleep(max(0.0, SAMPLE_EVERY - (self.now() - t)))

    def _pending_orders(self) -> tuple[dict[str, int], dict[str, int]]:
        """Each strategy's orders pending and the stock they hold, read from orders.db."""
        pending = {str(s): 0 for s in self.casts}
        held = {str(s): 0 for s in self.casts}
        orders = self.databases["orders"]
        try:
            with closing(sqlite3.connect(f"file:{quote(str(orders))}?mode=ro", uri=True,
                                         timeout=1.0)) as conn:
                rows = conn.execute("SELECT product_id, count(*), sum(quantity) FROM orders "
                                    "WHERE status = 'pending' GROUP BY product_id").fetchall()
        except sqlite3.Error:
            return pending, held
        for product, count, quantity in rows:
            owner = self._owner.get(product)
            if owner is not None:
                pending[owner] += count
                held[owner] += quantity
        return pending, held


def _classified(status: int, answer: Any) -> tuple[Answer, int | None, str | None]:
    """(what the answer says, the order's id, a rejection's reason)."""
    if status in (200, 201, 202) and isinstance(answer, dict) and "id" in answer:
        order_status = answer.get("status", "confirmed")
        kind: Answer = order_status if order_status in ("pending", "rejected") else \
            "confirmed"
        return kind, int(answer["id"]), answer.get("reason")
    if status in REFUSED and isinstance(answer, dict):
        return "rejected", None, str(answer.get("error", "refused"))
    return "failed", None, None if not isinstance(answer, dict) else answer.get("error")

