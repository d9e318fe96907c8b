"""`msshop bench`: measure the strategies in a sandbox of its own, in one run.

What it reports (ratios within one run are the figures to trust on a noisy machine):
- latency (median, p99) as a caller of the query service sees it, for the floor (a bare
  endpoint of the same stack doing one indexed SQLite read), the floor with the answer's
  rows (the same user's rows read and encoded, nothing else: what the payload costs),
  replicated, and direct-call batched and naive, for a user with 10 orders (both floors and
  replicated in alternating blocks, since their ratios are the targets);
- how replicated and direct-call change with 1, 10, 100 and 1,000 orders per user;
- purchases per second from one sequential client, and the replication lag of those
  purchases (commit in orders -> applied in the query service's read model);
- purchases per second sustained by 16 concurrent clients, and the replication lag under
  that load and at a paced 1,000 purchases per second;
- the read model's rebuild rate (events per second, replaying the whole log);
- the time from `up` to all five services healthy.

On each bus backend asked for (`--bus log,nats`), one after the other, each in a sandbox
of its own: the same figures side by side.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from msshop.contracts.config import Settings
from msshop.contracts.limits import MAX_BATCH
from msshop.contracts.strategies import ReadStrategy
from msshop.instruments.asking import Questioner
from msshop.instruments.bench import loadgen
from msshop.instruments.bench.report import (
    BenchReport,
    Figures,
    Load,
    Measured,
    PlanReport,
    Staged,
)
from msshop.instruments.checking import caught_up, network_stages
from msshop.instruments.client import ShopClient
from msshop.instruments.seed import SeedPlan, seed
from msshop.runtime.http1 import Connection
from msshop.runtime.orchestrator import lifecycle
from msshop.runtime.orchestrator.state import State

SIZES = (1, 10, 100, 1000)
CLIENTS = 16  # concurrent purchasing clients (one kept-alive connection each)
LAG_RATE = 1000  # purchases per second for the lag-under-load measurement
Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Plan:
    requests: int  # per latency measurement
    purchases: int
    background: SeedPlan
    load_seconds: float

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(200, 300, SeedPlan(200, 60, 2000, 7), 2.0)
        return cls(2000, 3000, SeedPlan(2000, 200, 50_000, 7), 10.0)


class Timer:
    """GETs on one kept-alive connection, timed from request to the last byte read."""

    def __init__(self, state: State, service: str) -> None:
        info = state.services[service]
        self.conn = Connection(state.host, info.port, timeout=30)

    def get(self, path: str) -> float:
        started = time.perf_counter()
        status, _ = self.conn.request("GET", path)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            raise RuntimeError(f"GET {path} answered HTTP {status}")
        return elapsed

    def measure(self, path: str, count: int) -> Figures:
        return self.interleaved([path], count)[path]

    def interleaved(self, paths: list[str], count: int, rounds: int = 10
                    ) -> dict[str, Figures]:
        """`count` requests to each path, in alternating blocks: on a noisy machine a
        ratio of two figures measured one after the other is partly a ratio of two
        moments; taken in turns, both see the same moments."""
        for path in paths:
            for _ in range(max(10, count // 20)):  # warm up: connection, caches, code paths
                self.get(path)
        samples: dict[str, list[float]] = {path: [] for path in paths}
        block = max(1, count // rounds)
        while any(len(taken) < count for taken in samples.values()):
            for path in paths:
                taken = samples[path]
                taken.extend(self.get(path) for _ in range(min(block, count - len(taken))))
        return {path: summarize(taken) for path, taken in samples.items()}


def summarize(samples: list[float]) -> Figures:
    ordered = sorted(samples)
    if not ordered:
        return {"count": 0, "p50": 0.0, "p99": 0.0, "mean": 0.0}
    return {"count": len(ordered), "p50": statistics.median(ordered),
            "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "mean": statistics.fmean(ordered)}


def run_each(settings: Settings, backends: list[str], quick: bool = False,
             say: Say | None = None) -> list[BenchReport]:
    """The bench on each of `backends` in turn (log, nats), in this order."""
    tell: Say = say or (lambda message: None)
    reports = []
    for backend in backends:
        config = dataclasses.replace(settings, bus_backend=backend)
        reports.append(run(config, quick, _tagged(tell, backend) if len(backends) > 1
                           else tell))
    return reports


def _tagged(tell: Say, backend: str) -> Say:
    return lambda message: tell(f"[{backend}] {message}")


def run(settings: Settings, quick: bool = False, say: Say | None = None) -> BenchReport:
    tell: Say = say or (lambda message: None)
    plan = Plan.make(quick)
    root = Path(tempfile.mkdtemp(prefix="msshop-bench-"))
    config = dataclasses.replace(settings, sandbox_dir=root / "sandbox", base_port=0)
    try:
        tell(f"starting a sandbox of its own, on the {settings.bus_backend} bus")
        started = time.perf_counter()
        state, _ = lifecycle.up_detached(config)
        up_ms = (time.perf_counter() - started) * 1000
        try:
            measured = measure_everything(state, plan, tell)
        finally:
            lifecycle.down(config)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"bus": settings.bus_backend, "quick": quick,
            "plan": cast(PlanReport, dataclasses.asdict(plan)), "up_ms": up_ms,
            "fork_to_healthy_ms": max(s.ready_ms or 0 for s in state.services.values()),
            **measured}


def measure_everything(state: State, plan: Plan, tell: Say) -> Measured:
    client = ShopClient(state, timeout=60)
    tell(f"seeding {plan.background.orders:,} orders, and users with "
         + ", ".join(map(str, SIZES)) + " orders")
    seed(client, plan.background)
    stock_up(client, plan.background.products)
    users = users_with_orders(client)
    caught_up(client, timeout=120)

    timer = Timer(state, "query")
    typical = users[10]
    tell(f"latency, {plan.requests:,} requests each, user with 10 orders")
    floor, rows = f"/bench/floor/{typical}", f"/bench/floor-rows/{typical}"
    replicated = f"/user-orders/{typical}?strategy={ReadStrategy.REPLICATED}"
    compared = timer.interleaved([floor, rows, replicated], plan.requests)
    latency: dict[str, Figures] = {
        "floor": compared[floor],
        "floor rows": compared[rows],
        ReadStrategy.REPLICATED: compared[replicated],
        ReadStrategy.DIRECT_CALL: timer.measure(
            f"/user-orders/{typical}?strategy={ReadStrategy.DIRECT_CALL}", plan.requests),
        "direct-call naive": timer.measure(
            f"/user-orders/{typical}?strategy={ReadStrategy.DIRECT_CALL}&fanout=naive",
            plan.requests // 4),
    }
    tell("latency and sequential network stages by orders per user: "
         + ", ".join(map(str, SIZES)))
    by_orders: dict[int, dict[str, Staged]] = {}
    questioner = Questioner(state)
    for size in SIZES:
        count = max(50, plan.requests // (4 if size >= 1000 else 1))
        by_orders[size] = {
            strategy: {**timer.measure(f"/user-orders/{users[size]}?strategy={strategy}",
                                       count),
                       "stages": stages(questioner, users[size], strategy)}
            for strategy in (ReadStrategy.REPLICATED, ReadStrategy.DIRECT_CALL)}

    tell(f"{plan.purchases:,} purchases from one client, and their replication lag")
    since = time.time()
    started = time.perf_counter()
    for n in range(plan.purchases):
        client.buy(users[1], 1 + n % plan.background.products, request_id=f"bench-{since}-{n}")
    seconds = time.perf_counter() - started
    caught_up(client, timeout=60)
    lags = client.lag(since)

    tell(f"purchases from {CLIENTS} concurrent clients for {plan.load_seconds:g} s: the "
         "sustained rate with outbox, bus and read model all working")
    sustained = load_with_lag(client, state, users[1], plan, rate=None)
    tell(f"replication lag at {LAG_RATE:,} purchases/s for {plan.load_seconds:g} s")
    paced = load_with_lag(client, state, users[1], plan, rate=LAG_RATE)

    tell("rebuilding the read model from position 0 of the log")
    rebuilt = client.replay()
    return {"latency_ms": latency, "by_orders": by_orders,
            "purchases": {"count": plan.purchases, "per_second": plan.purchases / seconds},
            "lag_ms": summarize(lags), "sustained": sustained, "paced": paced,
            "rebuild": {"events": rebuilt["events"], "seconds": rebuilt["seconds"],
                        "per_second": rebuilt["per_second"]}}


def load_with_lag(client: ShopClient, state: State, user_id: int, plan: Plan,
                  rate: float | None) -> Load:
    """`load`, then the replication lag of its purchases once the read model has them all."""
    since = time.time()
    result = load(state, user_id, plan.background.products, plan.load_seconds, rate)
    caught_up(client, timeout=120)
    return {"clients": CLIENTS, "seconds": result.seconds, "confirmed": result.confirmed,
            "failed": result.failed, "per_second": result.per_second,
            "target_per_second": rate, "latency_ms": summarize(result.latencies_ms),
            "lag_ms": summarize(client.lag(since))}


def load(state: State, user_id: int, products: int, seconds: float, rate: float | None
         ) -> loadgen.Result:
    """Purchases from CLIENTS connections for `seconds`, as fast as they go or paced to
    `rate` per second in all; what was confirmed, and how long each purchase took."""
    tag = time.time()

    def purchase(k: int, n: int) -> tuple[str, str, bytes]:
        return "POST", "/orders", json.dumps({
            "user_id": user_id, "product_id": 1 + (k + n) % products,
            "request_id": f"load-{tag}-{k}-{n}"}).encode()

    orders = state.services["orders"]
    return loadgen.run(state.host, orders.port, purchase, CLIENTS, seconds, rate)


STAGE_SAMPLES = 3  # answers asked to count a strategy's stages; the fewest seen is kept


def stages(questioner: Questioner, user_id: int, strategy: str) -> int:
    """Sequential network stages behind an answer, counted from its trace: the fewest of
    a few answers. Stages are read from when the calls ran, so on a busy machine two
    calls made at once can run one after the other and count as two; they never count
    fewer than the strategy makes."""
    from msshop.instruments.traces.shape import summary

    counted = []
    for _ in range(STAGE_SAMPLES):
        asked = questioner.ask(user_id, strategy)
        counted.append(network_stages(asked.spans, summary(asked.spans)))
    return min(counted)


BENCH_STOCK = 1_000_000  # of each product, and credit enough: no purchase is refused
BENCH_CREDIT = 100_000_000.0


def stock_up(client: ShopClient, products: int) -> None:
    """Every seeded product restocked for the bench's purchases (keyed: once per shop)."""
    import msgspec

    for first in range(1, products + 1, MAX_BATCH):
        client.raw_checked("products", "/products/stock", msgspec.json.encode({
            "key": f"bench-{first}", "products": [
                {"id": i, "quantity": BENCH_STOCK}
                for i in range(first, min(products, first + MAX_BATCH - 1) + 1)]}),
            as_owner=True)


def users_with_orders(client: ShopClient) -> dict[int, int]:
    """A user for each size in SIZES with exactly that many orders; {size: user id}."""
    people = [{"email": f"bench-{size}@example.com", "name": f"Bench {size}",
               "credit": BENCH_CREDIT} for size in SIZES]
    ids = client.add_batch("users", people).get("ids", [])
    products = client.products(limit=50)["products"]
    users = dict(zip(SIZES, ids, strict=True))
    for size, user_id in users.items():
        orders = [{"user_id": user_id, "product_id": products[n % len(products)]["id"],
                   "quantity": 1 + n % 3, "request_id": f"bench-{size}-{n}"}
                  for n in range(size)]
        client.add_batch("orders", orders)
    return users
