"""The orders service: purchases. Owns orders.db only.

It cannot read users or products from their files, so it asks those services over HTTP to
take the purchase's stock and credit (direct-call, taking.py): products answers the price
it took the stock at, which is recorded with the order. A purchase either service refuses
(out of stock, not enough credit, no such user or product) is not recorded, and gets back
what the other took.

    POST /orders         {"user_id", "product_id", "quantity"?, "request_id"?}
                         -> 201 order | 200 the same order again, for a repeated request_id
                         | 409 out of stock, not enough credit | 422 no such user/product
                         the order carries "event": {"id", "type", "position"}; with
                         ?wait_published_ms=N it waits up to N ms for the bus position
    POST /orders?write=saga  the same body -> 202 the order, pending (200: the request_id's
                         order, whatever its status); products and users say the rest
    POST /orders?write=saga-orchestrated  the same; orders' orchestrator runs the saga
    POST /orders/batch   {"orders": [...]}  -> {"created", "existing"}; all or nothing
    GET  /orders?user_id=U                  -> {"orders": [...]}
    GET  /orders/{id}?wait_ms=N             -> order | 404; waits up to N ms while pending

The saga (write=saga, saga.py beside this): the order is committed PENDING with its
OrderPlaced (the sagas' purchases that arrived together in one transaction); products
takes the stock, users the credit, and orders' own step consumer ends the order confirmed
(CreditTaken) or rejected with the reason (StockRefused, or StockGivenBack once the stock
of a credit refusal is back), with OrderConfirmed / OrderRejected in the same transaction.
The orchestrated saga (write=saga-orchestrated, orchestration.py): the same pending order,
and beside it the saga's row in `sagas` and its first command, TakeStock; orders'
orchestrator then sends products and users one command at a time over the bus, ends the
order on their replies, and undoes the saga (newest step first) when one does not answer in
time (`saga.step_timeout`).

`request_id` is the client's idempotency key: a purchase retried after a lost answer is
recorded once, and its stock and credit taken once (one is made when none is sent).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from msshop.contracts import events
from msshop.contracts.events import Event
from msshop.contracts.limits import MAX_BATCH, MAX_ID, MAX_QUANTITY, MAX_REQUEST_ID
from msshop.contracts.saga_progress import MAX_IN_FLIGHT, SagasInFlight
from msshop.contracts.shop import Created, Order, OrdersOfUser, OrderStatus
from msshop.contracts.strategies import WriteStrategy
from msshop.runtime.platform.app import ServiceApp, service_app
from msshop.runtime.platform.batching import Coalescer
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.http import HttpError, json_response, read_body
from msshop.runtime.platform.openapi import Endpoint, Param, path_id
from msshop.runtime.platform.outbox import OUTBOX_SCHEMA, OUTBOX_TRACE_COLUMN, Outbox
from msshop.runtime.platform.saga import SAGA_MIGRATION, Participant
from msshop.runtime.platform.tracing import current_trace_id, followed_span
from msshop.runtime.services.orders import in_flight, orchestration, saga
from msshop.runtime.services.orders.taking import (
    GiveBacks,
    Keys,
    Ledgers,
    Refusal,
    give_back_all,
    refused_batch,
    take_each,
)

MIGRATIONS = [
    """
    CREATE TABLE orders (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL,
        product_id INTEGER NOT NULL,
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        unit_price_cents INTEGER NOT NULL,
        request_id TEXT UNIQUE,
        created_at REAL NOT NULL
    );
    CREATE INDEX orders_by_user ON orders (user_id, id);
    """,
    OUTBOX_SCHEMA,
    OUTBOX_TRACE_COLUMN,
    # issue 26's saga: an order may be pending until products and users have said; the
    # orders written before it were all confirmed as they were written
    """
    ALTER TABLE orders ADD COLUMN status TEXT NOT NULL DEFAULT 'confirmed';
    ALTER TABLE orders ADD COLUMN reason TEXT;
    """,
    SAGA_MIGRATION,
    # issue 27's orchestrated saga: each purchase's saga state, kept by orders' orchestrator
    orchestration.SAGAS_SCHEMA,
    # the sagas in flight, counted for /health (the dashboard asks it 4 times a second):
    # only the pending orders are in it, so it stays as small as what is in flight
    f"CREATE INDEX orders_pending ON orders (id) WHERE status = '{OrderStatus.PENDING}'",
]
#: what a purchase writes (status and reason keep their defaults: confirmed, null)
INSERTED = "id, user_id, product_id, quantity, unit_price_cents, request_id, created_at"
COLUMNS = f"{INSERTED}, status, reason"
COALESCE = 256  # at most this many concurrent purchases checked and committed together
MAX_WAIT_PUBLISHED_MS = 10_000
MAX_WAIT_MS = 10_000  # GET /orders/{id}?wait_ms: the longest wait for a pending order
#: POST /orders?write=: what orders serves (monolith: refused, with where it is made)
WRITES: tuple[WriteStrategy, ...] = tuple(WriteStrategy)
T = TypeVar("T")
Ref = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID, description="an id: a positive integer")]


class Purchase(msgspec.Struct, forbid_unknown_fields=True):
    """A purchase: a user (known to users) buys a product (known to products)."""

    user_id: Ref
    product_id: Ref
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY)] = 1
    request_id: Annotated[str, msgspec.Meta(
        min_length=1, max_length=MAX_REQUEST_ID,
        description="the purchase's idempotency key: a repeat answers the first order",
        extra_json_schema={"pattern": r"^[^\x00]+$"})] | None = None  # a NUL: checked()


class Purchases(msgspec.Struct, forbid_unknown_fields=True):
    """Purchases recorded together, all or nothing; known request_ids are skipped."""

    orders: Annotated[list[Purchase], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


def checked(purchase: Purchase, where: str = "") -> Purchase:
    """What the type does not enforce (its ranges and lengths it does, bodies.py)."""
    if purchase.request_id is not None and "\x00" in purchase.request_id:
        # SQLite's json_each (the batch's lookup of known keys) would end it at the NUL
        raise HttpError(422, f"{where}request_id must not contain a NUL character")
    return purchase


def as_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    """An order's answer from its row (COLUMNS' order)."""
    return {"id": row[0], "user_id": row[1], "product_id": row[2], "quantity": row[3],
            "unit_price": row[4] / 100, "total": row[3] * row[4] / 100,
            "request_id": row[5], "created_at": row[6], "status": row[7], "reason": row[8]}


def order_placed(row: tuple[Any, ...], trace_id: str | None, parent_span: str | None
                 ) -> Event:
    """The OrderPlaced event of an order's row as stored (COLUMNS' order): made from the
    row, so a batch of a million orders needs no dict per order first."""
    return events.order_placed(row[0], row[1], row[2], row[3], row[4], row[6], trace_id,
                               parent_span, row[5])


# --- plain functions over the connection -----------------------------------------------------


def find_by_request(conn: sqlite3.Connection, request_id: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM orders WHERE request_id = ?",
                       (request_id,)).fetchone()
    return None if row is None else as_dict(row)


def place_each(conn: sqlite3.Connection, outbox: Outbox,
               purchases: list[tuple[Purchase, int]]) -> list[tuple[dict[str, Any], bool]]:
    """Record purchases (each with its price in cents) in one transaction; for each, (order,
    created). A request_id already recorded returns that first order instead."""
    now = time.time()
    placed: list[tuple[dict[str, Any], bool]] = []
    with outbox.transaction(conn):
        for purchase, price_cents in purchases:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO orders (user_id, product_id, quantity, "
                "unit_price_cents, request_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (purchase.user_id, purchase.product_id, purchase.quantity, price_cents,
                 purchase.request_id, now))
            if cursor.rowcount == 0 and purchase.request_id is not None:
                existing = find_by_request(conn, purchase.request_id)
                assert existing is not None
                placed.append((existing, False))
                continue
            row = (cursor.lastrowid, purchase.user_id, purchase.product_id,
                   purchase.quantity, price_cents, purchase.request_id, now,
                   OrderStatus.CONFIRMED.value, None)
            event = order_placed(row, current_trace_id(), followed_span())
            order = as_dict(row)
            outbox.add(conn, [event])
            order["event"] = {"id": event.id, "type": event.type, "position": None}
            placed.append((order, True))
    return placed


class Pending(msgspec.Struct, frozen=True):
    """A saga's purchase as its request left it: with the request's trace, so that its
    OrderPlaced (and every step after it) is in that request's trace, whichever request's
    batch committed it."""

    purchase: Purchase
    trace_id: str | None
    parent_span: str | None
    write: WriteStrategy = WriteStrategy.SAGA  # or SAGA_ORCHESTRATED


def place_pending(conn: sqlite3.Connection, outbox: Outbox, pending: list[Pending],
                  step_timeout: float) -> list[tuple[dict[str, Any], bool]]:
    """Sagas' purchases that arrived together: each order PENDING (no price yet: products
    says it) with its OrderPlaced (an orchestrated one's also with its saga's row and first
    command), all in one transaction; (order, created) for each. A
    request_id already recorded (before, or earlier in the batch) answers that order,
    whatever its status."""
    now = time.time()
    placed: list[tuple[dict[str, Any], bool]] = []
    made: list[Event] = []
    with outbox.transaction(conn):
        for each in pending:
            purchase = each.purchase
            assert purchase.request_id is not None  # the saga's steps are keyed by it
            cursor = conn.execute(
                "INSERT OR IGNORE INTO orders (user_id, product_id, quantity, "
                "unit_price_cents, request_id, created_at, status) VALUES (?, ?, ?, 0, ?, ?, ?)",
                (purchase.user_id, purchase.product_id, purchase.quantity,
                 purchase.request_id, now, OrderStatus.PENDING.value))
            if cursor.rowcount == 0:
                existing = find_by_request(conn, purchase.request_id)
                assert existing is not None
                placed.append((existing, False))
                continue
            row = (int(cursor.lastrowid or 0), purchase.user_id, purchase.product_id,
                   purchase.quantity, 0, purchase.request_id, now,
                   OrderStatus.PENDING.value, None)
            event = events.order_placed(row[0], row[1], row[2], row[3], 0, now,
                                        each.trace_id, each.parent_span,
                                        purchase.request_id, OrderStatus.PENDING, each.write)
            made.append(event)
            if each.write is WriteStrategy.SAGA_ORCHESTRATED:  # its saga, and TakeStock
                made.append(orchestration.begin(
                    conn, row[0], purchase.request_id, purchase.user_id, purchase.product_id,
                    purchase.quantity, each.trace_id, each.parent_span, now, step_timeout))
            order = as_dict(row)
            order["event"] = {"id": event.id, "type": event.type, "position": None}
            placed.append((order, True))
        outbox.add(conn, made)
    return placed


def place_orders(conn: sqlite3.Connection, outbox: Outbox, purchases: list[Purchase],
                 prices: dict[int, int]) -> dict[str, int]:
    """Record a batch: purchases whose request_id is known are skipped. One transaction:
    the orders and their OrderPlaced events commit together."""
    now = time.time()
    with outbox.transaction(conn):
        known = {row[0] for row in conn.execute(
            "SELECT request_id FROM orders WHERE request_id IN "
            "(SELECT value FROM json_each(?))",
            (msgspec.json.encode([p.request_id for p in purchases if p.request_id]),))}
        new: list[Purchase] = []
        for p in purchases:
            if p.request_id is None or p.request_id not in known:
                new.append(p)
                if p.request_id is not None:
                    known.add(p.request_id)
        (last,) = conn.execute("SELECT coalesce(max(id), 0) FROM orders").fetchone()
        # The ids SQLite would give (max + 1 each: no AUTOINCREMENT, and BEGIN IMMEDIATE
        # keeps every other writer out), given here so the rows need not be read back to
        # make their events: reading them back cost this service ~1 s of a million-order
        # seed.
        rows = [(order_id, p.user_id, p.product_id, p.quantity, prices[p.product_id],
                 p.request_id, now) for order_id, p in enumerate(new, start=last + 1)]
        conn.executemany(f"INSERT INTO orders ({INSERTED}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         rows)
        trace_id, parent_span = current_trace_id(), followed_span()  # the same for all
        outbox.add(conn, [order_placed(row, trace_id, parent_span) for row in rows])
    return {"created": len(rows), "existing": len(purchases) - len(rows)}


def unknown(conn: sqlite3.Connection, purchases: list[Purchase]) -> list[Purchase]:
    """The purchases whose request_id no order has yet, once each (a batch may repeat one)."""
    known = {row[0] for row in conn.execute(
        "SELECT request_id FROM orders WHERE request_id IN (SELECT value FROM json_each(?))",
        (msgspec.json.encode([p.request_id for p in purchases]),))}
    new: list[Purchase] = []
    for p in purchases:
        if p.request_id not in known:
            new.append(p)
            known.add(p.request_id)
    return new


def orders_of(conn: sqlite3.Connection, user_id: int, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(f"SELECT {COLUMNS} FROM orders WHERE user_id = ? ORDER BY id LIMIT ?",
                        (user_id, limit)).fetchall()
    return [as_dict(r) for r in rows]


# --- HTTP ------------------------------------------------------------------------------------


def create_app(ctx: ServiceContext) -> ServiceApp:
    db = ctx.database(MIGRATIONS, ["orders"])
    peers = ctx.peers()
    bus = ctx.bus(peers)
    outbox = Outbox("orders", lambda: db.conn, bus, tracer=ctx.tracer, tasks=ctx.tasks)
    keys = Keys()
    ledgers = Ledgers(peers, ctx.credential)
    owed = GiveBacks(ledgers, ctx.tasks)
    ended = saga.Ended()
    orchestrator = orchestration.Orchestrator(ctx.saga_step_timeout)
    participant = Participant(ctx, db, bus, outbox, saga.steps(orchestrator),
                              ended=ended.wake)
    deadlines = orchestration.Deadlines(orchestrator, lambda: db.conn, outbox, ctx.tasks)

    def keyed(purchases: list[Purchase]) -> list[Purchase]:
        """Every purchase with a request_id: its takes are keyed by it."""
        return [p if p.request_id is not None else msgspec.structs.replace(
            p, request_id=keys.new()) for p in purchases]

    async def checkout(purchases: list[Purchase]) -> list[tuple[dict[str, Any], bool] |
                                                        Exception]:
        """Purchases that arrived together: one take of stock, one of credit, one commit."""
        purchases = keyed(purchases)
        named = [p.request_id or "" for p in purchases]
        prices = await take_each(ledgers, owed, list(purchases), named)
        valid = [(p, price) for p, price in zip(purchases, prices, strict=True)
                 if not isinstance(price, Refusal)]
        placed: list[tuple[dict[str, Any], bool]] = []
        if valid:
            with db.span("INSERT", "orders") as span:
                placed = await recorded(lambda: place_each(db.conn, outbox, valid),
                                        [p.request_id or "" for p, _ in valid])
                span["attributes"]["msshop.keys"] = [order["id"] for order, _ in placed]
                span["attributes"]["msshop.rows"] = len(placed)
        done = iter(placed)
        return [price.error() if isinstance(price, Refusal) else next(done)
                for price in prices]

    async def recorded(write: Callable[[], T], taken: list[str]) -> T:
        """The orders' commit; if it fails (a full disk), what was taken for them goes back
        before the error is answered."""
        try:
            return write()
        except Exception:
            await give_back_all(owed, taken)
            raise

    purchases: Coalescer[Purchase, tuple[dict[str, Any], bool]] = Coalescer(
        checkout, limit=COALESCE)

    async def record_pending(batch: list[Pending]) -> list[tuple[dict[str, Any], bool]]:
        """Sagas' purchases that arrived together: one commit (group commit)."""
        with db.span("INSERT", "orders") as span:
            placed = place_pending(db.conn, outbox, batch, ctx.saga_step_timeout)
            span["attributes"]["msshop.keys"] = [order["id"] for order, _ in placed]
            span["attributes"]["msshop.rows"] = len(placed)
        return placed

    pending: Coalescer[Pending, tuple[dict[str, Any], bool]] = Coalescer(
        record_pending, limit=COALESCE)

    async def post_order(request: Request, wait_published_ms: int, write: WriteStrategy
                         ) -> Response:
        purchase = checked(await read_body(request, Purchase))
        wait = wait_published_ms / 1000
        if write is WriteStrategy.MONOLITH:
            raise HttpError(422, "write=monolith: the monolith's purchase is made by the CLI "
                                 "over the three files (msshop buy --write monolith)")
        if purchase.request_id is not None:
            seen = find_by_request(db.conn, purchase.request_id)
            if seen is not None:
                return json_response(await with_event(seen, wait), 200)
        if write.saga:
            (purchase,) = keyed([purchase])
            placed = await pending.submit(Pending(purchase, current_trace_id(),
                                                  followed_span(), write))
            order, created = placed.value
            return json_response(await with_event(order, wait), 202 if created else 200)
        waiting = ctx.tracer.start("checkout (batched)")  # kept only if another trace has it
        done = await purchases.submit(purchase)
        order, created = done.value
        if not done.first:  # the calls and the insert are in the batch's first trace
            waiting["attributes"].update({"msshop.batch.size": done.size,
                                          "msshop.batch.trace_id": done.trace_id})
            ctx.tracer.finish(waiting)
        return json_response(await with_event(order, wait), 201 if created else 200)

    async def with_event(order: dict[str, Any], wait: float) -> dict[str, Any]:
        """The order and its OrderPlaced event; with a `wait` (seconds), the event's bus
        position once the relay has sent it (read-your-writes: query --after POSITION)."""
        event = order.get("event") or outbox.latest_event("order", order["id"])
        if event is not None and event["position"] is None and wait:
            event["position"] = await outbox.published(event["id"], wait)
        return {**order, "event": event}

    async def post_batch(request: Request) -> Response:
        batch = await read_body(request, Purchases)
        purchases = keyed([checked(p, f"orders[{i}]: ") for i, p in enumerate(batch.orders)])
        new = unknown(db.conn, purchases)  # a known purchase took its share when it was made
        if not new:
            return json_response({"created": 0, "existing": len(purchases)})
        named = [p.request_id or "" for p in new]
        answers = await take_each(ledgers, owed, list(new), named)
        if any(isinstance(a, Refusal) for a in answers):
            await give_back_all(owed, [key for key, a in zip(named, answers, strict=True)
                                        if not isinstance(a, Refusal)])
            raise refused_batch(list(new), answers)
        prices = {p.product_id: a for p, a in zip(new, answers, strict=True)
                  if isinstance(a, int)}
        placed = await recorded(lambda: place_orders(db.conn, outbox, new, prices), named)
        return json_response({"created": placed["created"],
                              "existing": len(purchases) - placed["created"]})

    async def get_many(request: Request, user_id: int, limit: int) -> Response:
        with db.span("SELECT", "orders", [user_id]) as span:
            found = orders_of(db.conn, user_id, limit)
            span["attributes"]["msshop.rows"] = len(found)
        return json_response({"user_id": user_id, "orders": found})

    async def get_one(request: Request, order_id: int, wait_ms: int) -> Response:
        def read() -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = db.conn.execute(
                f"SELECT {COLUMNS} FROM orders WHERE id = ?", (order_id,)).fetchone()
            return row

        row = read()
        if row is not None and row[7] == OrderStatus.PENDING and wait_ms:
            row = await ended.wait(read, lambda r: r is None or r[7] != OrderStatus.PENDING,
                                   wait_ms / 1000)
        if row is None:
            raise HttpError(404, f"no order with id {order_id}")
        return json_response(as_dict(row))

    def health() -> dict[str, Any]:
        return {**db.health(), "outbox": outbox.health(), "owed_give_backs": owed.pending(),
                "saga": participant.health(), "in_flight": in_flight.counted(db.conn)}

    async def get_sagas(request: Request, limit: int) -> Response:
        return json_response(in_flight.listed(db.conn, limit))

    dependency = {502: "users or products failed the take (the message says how)",
                  503: "users or products is down or too slow (dependency, failure)"}
    return service_app(
        ctx.name,
        [
            Endpoint("POST", "/orders", post_order, "Buy a product", {
                201: (Order, "The new order, with its OrderPlaced event"),
                202: (Order, "write=saga or saga-orchestrated: the new order, pending, "
                      "with its OrderPlaced"),
                200: (Order, "The order this request_id already placed"),
                409: "Refused: out of stock or not enough credit (nothing stays taken)",
                422: "Invalid, or no such user or product", **dependency},
                body=Purchase,
                params=[Param("wait_published_ms", Annotated[int, msgspec.Meta(
                    ge=0, le=MAX_WAIT_PUBLISHED_MS)], "wait up to this long for the event's "
                    "bus position (read-your-writes)", default=0),
                        Param("write", Literal[WRITES], "direct-call: take stock and credit "
                              "now, over HTTP; saga: record the order pending, and let "
                              "products and users say (202); saga-orchestrated: the same, "
                              "orders' orchestrator sending them commands",
                              default=WriteStrategy.DIRECT_CALL)]),
            Endpoint("GET", "/orders", get_many, "A user's orders", {
                200: (OrdersOfUser, "The user's orders, oldest first")},
                params=[Param("user_id", Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)],
                              "the user", required=True,
                              missing="list a user's orders: GET /orders?user_id=U"),
                        Param("limit", Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH)],
                              "at most this many orders", default=MAX_BATCH)]),
            Endpoint("POST", "/orders/batch", post_batch, "Record many purchases", {
                200: (Created, "How many were new and how many known (by request_id)"),
                409: "Out of stock or not enough credit: nothing was recorded",
                422: "Invalid, or no such user or product: nothing was recorded",
                **dependency},
                body=Purchases),
            Endpoint("GET", "/orders/{order_id}", get_one, "One order", {
                200: (Order, "The order"), 404: "No order with that id"},
                params=[path_id("order_id", "order"),
                        Param("wait_ms", Annotated[int, msgspec.Meta(ge=0, le=MAX_WAIT_MS)],
                              "while the order is pending (a saga's), wait up to this long "
                              "for its outcome", default=0)]),
            Endpoint("GET", "/sagas", get_sagas, "The sagas not ended, the oldest first", {
                200: (SagasInFlight, "How many, and the oldest: an orchestrated one with its "
                                     "state (its step), a choreographed one only pending "
                                     "(where it is, the participants know: POST "
                                     "/saga/progress on products and users)")},
                params=[Param("limit", Annotated[int, msgspec.Meta(ge=1, le=MAX_IN_FLIGHT)],
                              "at most this many", default=10)],
                auth="owner", action="reading the sagas in flight",  # they name purchases
                chaos=False, traced=False),
        ],
        health,
        [db, peers, bus, outbox, owed, participant, deadlines],
        ctx.tracer,
        ctx.admin,
        __doc__ or "",
    )
