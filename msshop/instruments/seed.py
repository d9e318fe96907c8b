"""Deterministic, realistic shop data, written through the services' own batch APIs.

The same seed always makes the same people, products and purchases, and each carries a
natural key (email, sku, request_id), so seeding twice adds nothing the second time.
Each kind of data has its own random stream: asking for more orders keeps the first ones.

Where a seed's time goes (1,000,000 orders, two cores; docs/cli.md has the figures): each
batch of orders goes one stage after another — products takes its stock, users its credit,
then orders inserts the batch and its OrderPlaced events in one transaction. So the CLI
keeps every stage busy: batches of the services' limit (10,000), several in flight (one
for each stage to work on), each made (generated, then encoded with msgspec) in a thread
while others are in flight, so no service waits for the next. Replication (relay, bus,
read model) runs at the same time and is usually still catching up when the last batch is
in: `replication` says how far it is, `wait_replicated` waits for it.

Purchases take stock and credit (issue 26), so before the first order the seed restocks
its products and tops its buyers' credit up by exactly what its orders take (one call to
each, keyed by the plan, so a seed repeated gives nothing twice; the orders made once more
for the sums, which costs less than a restock per batch did): a seeded shop keeps the
invariant (`msshop verify` is clean), and each product ends with the stock it was created
with.
"""

from __future__ import annotations

import itertools
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar

from msshop.contracts.errors import InvalidArgument
from msshop.contracts.limits import MAX_BATCH
from msshop.contracts.waiting import WaitReport
from msshop.instruments import waiting
from msshop.instruments.client import BatchKind, EncodedBatch, ShopClient, encode_batch

if TYPE_CHECKING:
    from msshop.contracts.shop import Created

BATCH = MAX_BATCH  # items in one request: fewer, bigger requests (the services' limit)
AHEAD = 2  # batches made ahead of the one in flight
# batches sent at once, by kind. Orders: eight, so that every stage of a batch's way has
# one to work on: products taking the stock of one while users takes the credit of another
# and orders records a third (a batch's stages run one after the other, and with two in
# flight the two cores were idle a third of the time: 200,000 orders took 4.1 s, with eight
# 3.0 s, docs/benchmarks.md). Users and products one at a time, so that each seed gives
# them the same ids.
IN_FLIGHT: dict[str, int] = {"orders": 8}
WAIT_TIMEOUT = 600.0  # seconds --wait waits unless told (a million orders: 20-40 s here)
LOOK_EVERY = 0.5  # seconds between looks while waiting: a progress a person can follow, and
# few GETs (each look asks every service's /health and the bus's head, ~10 ms)
T = TypeVar("T")
Progress = Callable[[str, int, int], None]  # (what, done, total)

FIRST = ["Ada", "Alan", "Amara", "Ana", "Arjun", "Ben", "Chen", "Chloe", "Dara", "Diego",
         "Elena", "Emeka", "Fatima", "Femi", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jun",
         "Kai", "Lea", "Leila", "Liam", "Lucia", "Mara", "Mateo", "Mei", "Nia", "Noah",
         "Omar", "Priya", "Rosa", "Sam", "Sofia", "Tariq", "Yara", "Yusuf", "Zoe", "Zola"]
LAST = ["Adeyemi", "Andersen", "Bauer", "Chen", "Costa", "Dubois", "Evans", "Fischer",
        "Garcia", "Haddad", "Ito", "Jensen", "Khan", "Kowalski", "Lopez", "Mensah", "Moreau",
        "Nakamura", "Novak", "Okafor", "Olsen", "Patel", "Rossi", "Santos", "Schmidt", "Silva",
        "Singh", "Tanaka", "Virtanen", "Wang"]
CATALOGUE: dict[str, tuple[list[str], tuple[int, int]]] = {
    "hats": (["beanie", "fedora", "baseball cap", "bucket hat", "sun hat", "beret"], (12, 60)),
    "pants": (["jeans", "chinos", "cargo pants", "joggers", "corduroys"], (30, 120)),
    "shoes": (["sneakers", "boots", "loafers", "sandals", "running shoes"], (40, 180)),
    "shirts": (["t-shirt", "oxford shirt", "polo", "flannel shirt", "henley"], (15, 80)),
    "jackets": (["rain jacket", "denim jacket", "parka", "bomber", "fleece"], (50, 250)),
    "socks": (["ankle socks", "hiking socks", "dress socks"], (5, 20)),
    "scarves": (["wool scarf", "silk scarf", "snood"], (15, 70)),
    "bags": (["tote", "backpack", "messenger bag", "duffel"], (25, 150)),
}
STYLES = ["classic", "vintage", "waterproof", "wool", "linen", "leather", "organic cotton",
          "recycled", "slim", "relaxed", "everyday", "trail", "city", "heavyweight"]
COLOURS = ["black", "navy", "olive", "sand", "grey", "red", "forest green", "mustard",
           "white", "burgundy", "indigo", "rust"]
QUANTITIES = ([1] * 70) + ([2] * 20) + ([3] * 7) + [4, 4, 5]
KINDS: tuple[BatchKind, ...] = ("users", "products", "orders")


@dataclass(frozen=True)
class SeedPlan:
    users: int
    products: int
    orders: int
    seed: int


# --- the report: `msshop seed --json` prints it as it is -------------------------------------


class PlanShown(TypedDict):
    users: int
    products: int
    orders: int
    seed: int


class Seeded(TypedDict):
    """One kind of data: how many were new, how many the service knew already (by email,
    sku or request_id), and how long sending them all took."""

    created: int
    existing: int
    seconds: float
    rate: float  # items a second, new and known alike


# caught-up: every event written is in the read model; catching-up: not yet (the seed did
# not wait); timed-out: --wait gave up; service-down: a service replication needs is
# stopped or crashed, so it cannot catch up until started; no-sandbox: it stopped.
ReplicationState = Literal["caught-up", "catching-up", "timed-out", "service-down",
                           "no-sandbox"]


class Replication(TypedDict):
    """How far the read model is behind the shop's writes, at the seed's end or after
    waiting for it (with the look `msshop wait --for caught-up` takes)."""

    caught_up: bool  # every outbox empty and the read model at the bus's head
    state: ReplicationState
    # Looked at one after the other (outboxes, then the bus, then the read model), so an
    # event the relay sends in between is counted in both.
    backlog: int  # events committed by users, products and orders, not on the bus yet
    behind: int | None  # events on the bus the read model has not applied (None: unknown)
    bus_head: int | None  # the bus's last position (None: the bus did not answer)
    waited_ms: float  # how long --wait waited (0: not asked to wait)
    missing: list[str]  # what does not hold yet, one phrase each (empty once caught up)
    down: list[str]  # services replication needs that are stopped or crashed


class SeedReport(TypedDict):
    plan: PlanShown
    users: Seeded
    products: Seeded
    orders: Seeded
    seconds: float  # the whole seed, from the first batch to the last answer
    replication: Replication


def not_replicated(replication: Replication) -> int:
    """Events written but not yet in the read model, at most (see Replication)."""
    return replication["backlog"] + (replication["behind"] or 0)


def wait_timeout(wait: bool, timeout: float | None) -> float | None:
    """How long to wait, in seconds (None: no wait); a timeout without a wait is a mistake."""
    if timeout is not None and not wait:
        raise InvalidArgument("{timeout} is how long {wait} waits: give {wait} too",
                              "timeout", "wait")
    if not wait:
        return None
    return waiting.check_timeout(WAIT_TIMEOUT if timeout is None else timeout)


def exit_code(report: SeedReport, waited: bool) -> int:
    """0 once seeded. With --wait, as `msshop wait --for caught-up` exits: 1 when a service
    replication needs is down (or the sandbox stopped), 3 when the time was up."""
    if not waited:
        return 0
    return {"caught-up": 0, "timed-out": 3}.get(report["replication"]["state"], 1)


# --- the data --------------------------------------------------------------------------------


def make_users(plan: SeedPlan) -> list[dict[str, str]]:
    rng = random.Random(f"{plan.seed}-users")
    people = []
    for n in range(1, plan.users + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        people.append({"name": f"{first} {last}",
                       "email": f"{first}.{last}.{n}@example.com".lower()})
    return people


def make_products(plan: SeedPlan) -> list[dict[str, Any]]:
    rng = random.Random(f"{plan.seed}-products")
    products = []
    for n in range(1, plan.products + 1):
        category = rng.choice(list(CATALOGUE))
        items, (low, high) = CATALOGUE[category]
        title = f"{rng.choice(COLOURS)} {rng.choice(STYLES)} {rng.choice(items)}".capitalize()
        price = rng.randint(low, high) + rng.choice((0.0, 0.49, 0.99))
        products.append({"sku": f"seed{plan.seed}-{category}-{n:06d}", "title": title,
                         "price": round(price, 2), "stock": rng.randint(0, 500)})
    return products


def make_orders(plan: SeedPlan, user_ids: list[int], product_ids: list[int]
                ) -> Iterator[dict[str, Any]]:
    """Purchases skewed as shops are: a few people buy a lot, most buy a little."""
    rng = random.Random(f"{plan.seed}-orders")
    # The same draws, in the same order, as ever (the data must not change with the code);
    # bound once rather than looked up a million times.
    draw, choose = rng.random, rng.choice
    users, products = len(user_ids), len(product_ids)
    prefix = f"seed{plan.seed}-order-"
    for n in range(1, plan.orders + 1):
        user = user_ids[int(users * draw() ** 2)]
        product = product_ids[int(products * draw() ** 1.5)]
        yield {"user_id": user, "product_id": product, "quantity": choose(QUANTITIES),
               "request_id": f"{prefix}{n}"}


@dataclass(frozen=True)
class Restock:
    """What the whole seed's orders take, given before the first of them is sent: the
    encoded bodies of products' restocks and users' top-ups, each of at most a batch's
    items (the services' limit: a seed of 20,000 buyers tops them up in two calls)."""

    stock: list[bytes]  # empty: nothing to take (no orders)
    credit: list[bytes]  # empty: nothing to pay (no orders, or every price 0)


def restock(plan: SeedPlan, user_ids: list[int], product_ids: list[int],
            prices: dict[int, int]) -> Restock:
    """Stock and credit for exactly the orders `make_orders` will make (prices in cents by
    product id), keyed by the plan, so that the same seed again gives nothing twice (a key
    counts per product and per user: the calls of one seed may share it)."""
    import msgspec

    stock: dict[int, int] = {}
    credit: dict[int, int] = {}
    for order in make_orders(plan, user_ids, product_ids):
        product, quantity = order["product_id"], order["quantity"]
        stock[product] = stock.get(product, 0) + quantity
        credit[order["user_id"]] = credit.get(order["user_id"], 0) + quantity * prices[product]
    key = f"seed{plan.seed}-orders-{plan.users}x{plan.products}x{plan.orders}"
    restocks = [{"id": i, "quantity": q} for i, q in stock.items()]
    paying = [{"id": i, "amount": c / 100} for i, c in credit.items() if c]
    return Restock(
        [msgspec.json.encode({"key": key, "products": part})
         for part in batches(restocks, BATCH)],
        [msgspec.json.encode({"key": key, "users": part}) for part in batches(paying, BATCH)])


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter), taken as they come."""
    each = iter(items)
    while batch := list(itertools.islice(each, size)):
        yield batch


# --- seeding ---------------------------------------------------------------------------------


def seed(client: ShopClient, plan: SeedPlan, progress: Progress | None = None) -> SeedReport:
    """Users, then products, then orders (which name their ids); then one look at how far
    replication has got."""
    tell: Progress = progress or (lambda what, done, total: None)
    started = time.perf_counter()
    seeded: dict[BatchKind, Seeded] = {}

    def load(what: BatchKind, items: Iterable[dict[str, Any]], total: int,
             given: Restock | None = None) -> list[int]:
        """POST the items in batches; the ids the service gave them, in order (if it says).
        `given`, for orders: the stock and credit they take, given first."""
        began = time.perf_counter()
        ids: list[int] = []
        created = done = 0
        tell(what, 0, total)
        for body in given.stock if given is not None else []:
            client.raw_checked("products", "/products/stock", body, as_owner=True)
        for body in given.credit if given is not None else []:
            client.raw_checked("users", "/users/credit", body, as_owner=True)
        made = made_ahead(encode_batch(what, each) for each in batches(items, BATCH))
        for batch, answer in sent(client, what, made, IN_FLIGHT.get(what, 1)):
            ids.extend(answer.get("ids", []))
            created += answer["created"]
            done += batch.size
            tell(what, done, total)
        seconds = time.perf_counter() - began
        seeded[what] = {"created": created, "existing": done - created,
                        "seconds": round(seconds, 3),
                        "rate": round(done / seconds, 1) if seconds else 0.0}
        return ids

    user_ids = load("users", make_users(plan), plan.users)
    catalogue = make_products(plan)
    product_ids = load("products", catalogue, plan.products)
    prices = {i: round(p["price"] * 100) for i, p in zip(product_ids, catalogue, strict=True)}
    load("orders", make_orders(plan, user_ids, product_ids), plan.orders,
         restock(plan, user_ids, product_ids, prices))
    return {"plan": {"users": plan.users, "products": plan.products, "orders": plan.orders,
                     "seed": plan.seed},
            "users": seeded["users"], "products": seeded["products"],
            "orders": seeded["orders"], "seconds": round(time.perf_counter() - started, 3),
            "replication": replication(client)}


def sent(client: ShopClient, what: BatchKind, made: Iterator[EncodedBatch], in_flight: int
         ) -> Iterator[tuple[EncodedBatch, Created]]:
    """Each batch with the service's answer, in order; up to `in_flight` at once, each on a
    client (a connection) of its own, in a thread that waits on it (the socket call lets go
    of the GIL)."""
    if in_flight == 1:
        yield from ((batch, client.add_batch(what, batch)) for batch in made)
        return
    idle: queue.SimpleQueue[ShopClient] = queue.SimpleQueue()
    clients = [ShopClient(client.state, client.timeout) for _ in range(in_flight)]
    for each in clients:
        idle.put(each)

    def post(batch: EncodedBatch) -> Created:
        mine = idle.get()
        try:
            return mine.add_batch(what, batch)
        finally:
            idle.put(mine)

    waiting: deque[tuple[EncodedBatch, Future[Created]]] = deque()
    try:
        with ThreadPoolExecutor(in_flight, thread_name_prefix="seed-post") as pool:
            try:
                for batch in made:
                    waiting.append((batch, pool.submit(post, batch)))
                    if len(waiting) == in_flight:
                        first, answer = waiting.popleft()
                        yield first, answer.result()
                while waiting:
                    first, answer = waiting.popleft()
                    yield first, answer.result()
            finally:
                for _, answer in waiting:
                    answer.cancel()
    finally:
        for each in clients:
            each.close()


@dataclass(frozen=True)
class _End:
    """What the making thread leaves last: nothing more, or why it stopped."""

    error: BaseException | None = None


def made_ahead(made: Iterator[T], depth: int = AHEAD) -> Generator[T, None, None]:
    """The items of `made`, each made in a thread while the caller uses the ones before it.

    Seeding's caller spends its time waiting for a service's answer, in a socket call that
    lets go of the GIL, so the next batches are generated and encoded meanwhile, and the
    service gets the next batch as soon as it has answered. At most `depth` wait made.
    """
    ready: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
    stop = threading.Event()  # the caller has stopped taking (done, an error, Ctrl-C)

    def put(item: T | _End) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def make() -> None:
        try:
            for item in made:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the caller, raised there
            put(_End(exc))
        else:
            put(_End())

    maker = threading.Thread(target=make, name="seed-batches", daemon=True)
    maker.start()
    try:
        while not isinstance(item := ready.get(), _End):
            yield item
        if item.error is not None:
            raise item.error
    finally:
        stop.set()
        maker.join()


# --- replication -----------------------------------------------------------------------------


def replication(client: ShopClient) -> Replication:
    """One look: what still waits in the outboxes and between the bus and the read model."""
    return replication_from(_look(client), waited_ms=0.0, time_is_up=False)


def wait_replicated(client: ShopClient, timeout: float, progress: Progress | None = None
                    ) -> Replication:
    """Wait until the read model has every event written, up to `timeout` seconds; a
    service it needs that is stopped or crashed ends the wait at once (nobody is there to
    start it). `progress` is told ("catch-up", events applied since, events to apply)."""
    started = time.monotonic()
    deadline = started + timeout
    most = 0  # the most events seen left to apply: the progress's total
    while True:
        looked = _look(client)
        over = looked["outcome"] == "timed-out" and time.monotonic() >= deadline
        now = replication_from(looked, (time.monotonic() - started) * 1000, time_is_up=over)
        most = max(most, not_replicated(now))
        if progress is not None:
            progress("catch-up", most - not_replicated(now), most)
        if now["state"] != "catching-up":
            return now
        time.sleep(max(0.0, min(LOOK_EVERY, deadline - time.monotonic())))


def _look(client: ShopClient) -> WaitReport:
    """One look by `msshop wait --for caught-up` (timeout 0): the one notion of caught up.
    Not patient: a service stopped on purpose will not start by itself while we wait."""
    return waiting.until(client, "caught-up", waiting.REPLICATION, 0.0, patient=False)


def replication_from(looked: WaitReport, waited_ms: float, time_is_up: bool) -> Replication:
    """A look in the seed's words: one not caught up says timed-out once --wait's time is
    up (`time_is_up`), catching-up before that or when not waiting."""
    query = next((s for s in looked["services"] if s["name"] == "query"), None)
    states: dict[str, ReplicationState] = {
        "reached": "caught-up", "service-down": "service-down", "no-sandbox": "no-sandbox",
        "timed-out": "timed-out" if time_is_up else "catching-up"}
    return {"caught_up": looked["reached"], "state": states[looked["outcome"]],
            "backlog": sum(s.get("pending", 0) for s in looked["services"]),
            "behind": query.get("behind") if query is not None else None,
            "bus_head": looked.get("bus_head"), "waited_ms": round(waited_ms, 1),
            "missing": looked["missing"],
            "down": [s["name"] for s in looked["services"] if s["status"] in waiting.DOWN]}
