"""The workload: a steady, open-loop load on a running sandbox, recorded request by request.

- reads: `GET /user-orders/U` by each strategy at `read_rate` per second each, sent on
  schedule whether or not earlier ones have answered (a slow service does not slow the
  arrivals down, as real users would not);
- purchases: `POST /orders` at `purchase_rate` per second, each with its own request id;
- probes: every confirmed purchase is watched: its user's replicated answer is asked again
  and again until it shows the order. The staleness is the time from the order's commit
  (its created_at, the orders service's clock: the same machine's) to when the first
  answer that showed it was asked, to within the poll interval (a quarter of the time
  waited so far, at least 2 ms, at most 100 ms);
- samples: twice a second, the orders outbox's backlog and how far the read model is behind
  the bus.

Times are seconds from the start of the load (the event loop's monotonic clock).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from msshop.contracts.progress import Tally
from msshop.contracts.strategies import ReadStrategy
from msshop.instruments.experiments.report import STRATEGIES
from msshop.runtime.fd_limit import raise_fd_limit
from msshop.runtime.platform.wire import Client, ConnectFailed, address_of

TIMEOUT = 2.0  # a read or purchase unanswered this long counts as refused
SAMPLE_EVERY = 0.5
POLL = (0.002, 0.1)  # the probes' poll interval, at least and at most
JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Read:
    strategy: str
    t: float  # sent
    ok: bool
    ms: float


@dataclass(frozen=True)
class Purchase:
    t: float
    ok: bool
    user_id: int
    order_id: int | None


@dataclass
class Probe:
    order_id: int
    user_id: int
    t: float  # when the client had the confirmation, on the run's clock
    committed: float  # the order's created_at: wall clock, in the orders service
    seen: float | None = None  # wall clock: the first answer showing it was asked then

    @property
    def staleness_ms(self) -> float | None:
        return None if self.seen is None else max(0.0, self.seen - self.committed) * 1000


@dataclass(frozen=True)
class Sample:
    t: float
    backlog: int | None
    behind: int | None


@dataclass
class Recorded:
    reads: list[Read] = field(default_factory=list)
    purchases: list[Purchase] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)


class Workload:
    def __init__(self, urls: dict[str, str], users: list[int], products: list[int],
                 read_rate: float, purchase_rate: float, tag: str,
                 bus_head: Callable[[], int | None]) -> None:
        self.urls = urls  # query, orders
        self._addresses = {service: address_of(url) for service, url in urls.items()}
        self.bus_head = bus_head  # blocking (asked in a thread); None: the bus did not say
        self.users = users
        self.products = products
        self.read_rate = read_rate
        self.purchase_rate = purchase_rate
        self.tag = tag  # makes request ids unique to this run
        self.recorded = Recorded()
        self.started = 0.0
        self._pending: dict[int, list[Probe]] = defaultdict(list)
        self._watching: set[int] = set()
        self._watchers: set[asyncio.Task[None]] = set()
        self._probing = True
        # the services' own client (wire.py): a connection per request in flight, kept
        # alive for the next; from run() to settle(). Open-loop, so with a service slow
        # or paused by a fault the requests in flight pile up: as many descriptors as the
        # process may have
        raise_fd_limit()
        self._client = Client()
        self._random = random.Random(7)

    def now(self) -> float:
        return time.monotonic() - self.started

    def tally(self, second: int) -> dict[str, Tally]:
        """The reads sent in `second`, by strategy: answered (200) and failed, so far."""
        counted: dict[str, Tally] = {str(strategy): Tally(0, 0) for strategy in STRATEGIES}
        for read in self.recorded.reads:
            if second <= read.t < second + 1:
                counted[read.strategy] = counted[read.strategy].add(read.ok)
        return counted

    async def run(self, seconds: float) -> None:
        """The load for `seconds`; the probes of unseen purchases go on until settle()."""
        self.started = time.monotonic()
        sampler = asyncio.create_task(self._sample_until(seconds))
        await asyncio.gather(
            *(self._every(1 / self.read_rate, seconds, self._read, strategy)
              for strategy in STRATEGIES),
            self._every(1 / self.purchase_rate, seconds, self._purchase))
        await sampler

    async def settle(self, timeout: float) -> None:
        """Give the probes up to `timeout` to see their purchases, then stop them; the
        purchases still unseen are counted by unseen()."""
        deadline = time.monotonic() + timeout
        while self._watchers and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self._probing = False
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._client.close()

    async def _every(self, interval: float, seconds: float, send: Any, *args: Any) -> None:
        """Send at a steady rate; each request is its own task, so none waits for another."""
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        while (at := n * interval) < seconds:
            delay = at - self.now()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(send(n, *args))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)

    async def _call(self, method: str, service: str, path: str, body: Any = None,
                    timeout: float = TIMEOUT) -> tuple[int, Any]:
        """(status, decoded answer); status 0 when there was no answer at all (refused, cut
        off, or not within `timeout`)."""
        host, port = self._addresses[service]
        data, headers = (None, None) if body is None else (json.dumps(body).encode(), JSON)
        try:
            async with asyncio.timeout(timeout):
                status, content = await self._client.request(method, host, port, path, data,
                                                             headers)
        except (ConnectFailed, TimeoutError, OSError):  # Disconnected is a ConnectionError
            return 0, None
        try:
            return status, json.loads(content) if content else None
        except ValueError:
            return status, None

    async def _read(self, n: int, strategy: str) -> None:
        user = self.users[self._random.randrange(len(self.users))]
        sent, began = self.now(), time.perf_counter()
        status, _ = await self._call("GET", "query",
                                     f"/user-orders/{user}?strategy={strategy}")
        self.recorded.reads.append(Read(strategy, sent, status == 200,
                                        (time.perf_counter() - began) * 1000))

    async def _purchase(self, n: int) -> None:
        user = self.users[n % len(self.users)]
        product = self.products[self._random.randrange(len(self.products))]
        sent = self.now()
        status, answer = await self._call("POST", "orders", "/orders", {
            "user_id": user, "product_id": product, "request_id": f"{self.tag}-{n}"})
        confirmed = status in (200, 201) and isinstance(answer, dict) and "id" in answer
        order_id = int(answer["id"]) if confirmed else None
        self.recorded.purchases.append(Purchase(sent, confirmed, user, order_id))
        if order_id is not None:
            committed = answer.get("created_at")
            probe = Probe(order_id, user, self.now(),
                          committed if isinstance(committed, float) else time.time())
            self.recorded.probes.append(probe)
            self._pending[user].append(probe)
            if user not in self._watching:
                self._watching.add(user)
                task = asyncio.create_task(self._watch(user))
                self._watchers.add(task)
                task.add_done_callback(self._watchers.discard)

    async def _watch(self, user: int) -> None:
        """Ask the user's replicated answer until it shows every pending purchase."""
        pending = self._pending[user]
        try:
            while pending and self._probing:
                sent = time.time()
                status, answer = await self._call(
                    "GET", "query", f"/user-orders/{user}?strategy={ReadStrategy.REPLICATED}")
                if status == 200 and isinstance(answer, dict):
                    shown = {line.get("order_id") for line in answer.get("orders", [])}
                    for probe in [p for p in pending if p.order_id in shown]:
                        probe.seen = sent
                        pending.remove(probe)
                if pending:
                    waited = time.time() - min(p.committed for p in pending)
                    await asyncio.sleep(min(max(waited / 4, POLL[0]), POLL[1]))
        finally:
            self._watching.discard(user)

    async def _sample_until(self, seconds: float) -> None:
        """The read model's lag is the bus's head (asked of the bus) less the position the
        query service has applied: the query service's own idea of the head stops moving
        when it cannot reach the bus."""
        while (t := self.now()) < seconds:
            (_, orders), (_, query), head = await asyncio.gather(
                self._call("GET", "orders", "/health", timeout=SAMPLE_EVERY),
                self._call("GET", "query", "/health", timeout=SAMPLE_EVERY),
                asyncio.to_thread(self.bus_head))
            backlog = (orders.get("outbox") or {}).get("pending") \
                if isinstance(orders, dict) else None
            position = (query.get("consumer") or {}).get("position") \
                if isinstance(query, dict) else None
            behind = None if head is None or position is None else max(0, head - position)
            self.recorded.samples.append(Sample(t, backlog, behind))
            await asyncio.sleep(max(0.0, SAMPLE_EVERY - (self.now() - t)))

    def unseen(self) -> int:
        return sum(len(p) for p in self._pending.values())
