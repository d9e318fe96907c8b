"""The orders service: purchases. Owns orders.db only.

It cannot read users or products from their files, so it asks those services over HTTP
whether the user and the product exist, and what the product costs right now; the price
paid is recorded with the order.

    POST /orders         {"user_id", "product_id", "quantity"?, "request_id"?}
                         -> 201 order | 200 the same order again, for a repeated request_id
                         the order carries "event": {"id", "type", "position"}; with
                         ?wait_published_ms=N it waits up to N ms for the bus position
    POST /orders/batch   {"orders": [...]}  -> {"created", "existing"}; all or nothing
    GET  /orders?user_id=U                  -> {"orders": [...]}
    GET  /orders/{id}                       -> order | 404

`request_id` is the client's idempotency key: a purchase retried after a lost answer is
recorded once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from msshop.contracts import events
from msshop.contracts.events import Event
from msshop.contracts.limits import MAX_BATCH, MAX_ID, MAX_QUANTITY, MAX_REQUEST_ID
from msshop.contracts.shop import Created, Order, OrdersOfUser
from msshop.runtime.platform.app import ServiceApp, service_app
from msshop.runtime.platform.batching import Coalescer
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.http import HttpError, json_response, read_body
from msshop.runtime.platform.openapi import Endpoint, Param, path_id
from msshop.runtime.platform.outbox import OUTBOX_SCHEMA, OUTBOX_TRACE_COLUMN, Outbox
from msshop.runtime.platform.peers import Peers
from msshop.runtime.platform.tracing import current_trace_id, followed_span

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
]
COLUMNS = "id, user_id, product_id, quantity, unit_price_cents, request_id, created_at"
COALESCE = 256  # at most this many concurrent purchases checked and committed together
MAX_WAIT_PUBLISHED_MS = 10_000
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
    return {"id": row[0], "user_id": row[1], "product_id": row[2], "quantity": row[3],
            "unit_price": row[4] / 100, "total": row[3] * row[4] / 100,
            "request_id": row[5], "created_at": row[6]}


def order_placed(row: tuple[Any, ...], trace_id: str | None, parent_span: str | None
                 ) -> Event:
    """The OrderPlaced event of an order's row as stored (COLUMNS' order): made from the
    row, so a batch of a million orders needs no dict per order first."""
    return events.make(events.ORDER_PLACED, "orders", row[0], 1, {
        "id": row[0], "user_id": row[1], "product_id": row[2], "quantity": row[3],
        "unit_price": row[4] / 100}, trace_id, row[6], parent_span)


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
                   purchase.quantity, price_cents, purchase.request_id, now)
            event = order_placed(row, current_trace_id(), followed_span())
            order = as_dict(row)
            outbox.add(conn, [event])
            order["event"] = {"id": event.id, "type": event.type, "position": None}
            placed.append((order, True))
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
        conn.executemany(f"INSERT INTO orders ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        trace_id, parent_span = current_trace_id(), followed_span()  # the same for all
        outbox.add(conn, [order_placed(row, trace_id, parent_span) for row in rows])
    return {"created": len(rows), "existing": len(purchases) - len(rows)}


def orders_of(conn: sqlite3.Connection, user_id: int, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(f"SELECT {COLUMNS} FROM orders WHERE user_id = ? ORDER BY id LIMIT ?",
                        (user_id, limit)).fetchall()
    return [as_dict(r) for r in rows]


# --- asking the other services ---------------------------------------------------------------


class Known(msgspec.Struct):
    """What users and products said of a set of purchases."""

    missing_users: list[int]
    missing_products: list[int]
    prices: dict[int, int]  # cents, by product id


async def ask(peers: Peers, purchases: list[Purchase]) -> Known:
    """One call to users and one to products, at once, for every purchase; a dependency that
    fails fails them all."""
    user_ids = ",".join(str(i) for i in dict.fromkeys(p.user_id for p in purchases))
    product_ids = ",".join(str(i) for i in dict.fromkeys(p.product_id for p in purchases))
    users, products = await asyncio.gather(
        peers.get("users", f"/users?ids={user_ids}"),
        peers.get("products", f"/products?ids={product_ids}"),
    )
    for name, reply in (("users", users), ("products", products)):
        if reply.status != 200:
            raise HttpError(502, f"{name} answered HTTP {reply.status}: {reply.data}",
                            dependency=name)
    return Known(users.data["missing"], products.data["missing"],
                 {p["id"]: round(p["price"] * 100) for p in products.data["products"]})


async def check_each(peers: Peers, purchases: list[Purchase]) -> list[int | HttpError]:
    """For each purchase, its product's price in cents once both its user and its product
    are known to exist, or the 422 saying which is missing."""
    known = await ask(peers, purchases)
    missing_users = set(known.missing_users)
    answers: list[int | HttpError] = []
    for purchase in purchases:
        if purchase.user_id in missing_users:
            answers.append(HttpError(422, f"user_id {purchase.user_id}: no such user"))
        elif purchase.product_id not in known.prices:
            answers.append(HttpError(422, f"product_id {purchase.product_id}: no such "
                                          "product"))
        else:
            answers.append(known.prices[purchase.product_id])
    return answers


async def check_many(peers: Peers, purchases: list[Purchase]) -> dict[int, int]:
    """Prices by product id, once every user and product of the batch is known to exist."""
    known = await ask(peers, purchases)
    for field, missing, noun in (("user_id", known.missing_users, "user"),
                                 ("product_id", known.missing_products, "product")):
        if missing:
            shown = ", ".join(str(i) for i in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise HttpError(422, f"{field} {shown}{more}: no such {noun}; nothing was recorded")
    return known.prices


# --- HTTP ------------------------------------------------------------------------------------


def create_app(ctx: ServiceContext) -> ServiceApp:
    db = ctx.database(MIGRATIONS, ["orders"])
    peers = ctx.peers()
    bus = ctx.bus(peers)
    outbox = Outbox("orders", lambda: db.conn, bus, tracer=ctx.tracer, tasks=ctx.tasks)

    async def checkout(purchases: list[Purchase]) -> list[tuple[dict[str, Any], bool] |
                                                        Exception]:
        """Purchases that arrived together: one check with users and products, one commit."""
        prices = await check_each(peers, purchases)
        valid = [(p, price) for p, price in zip(purchases, prices, strict=True)
                 if not isinstance(price, HttpError)]
        placed: list[tuple[dict[str, Any], bool]] = []
        if valid:
            with db.span("INSERT", "orders") as span:
                placed = place_each(db.conn, outbox, valid)
                span["attributes"]["msshop.keys"] = [order["id"] for order, _ in placed]
                span["attributes"]["msshop.rows"] = len(placed)
        recorded = iter(placed)
        return [price if isinstance(price, HttpError) else next(recorded) for price in prices]

    purchases: Coalescer[Purchase, tuple[dict[str, Any], bool]] = Coalescer(
        checkout, limit=COALESCE)

    async def post_order(request: Request, wait_published_ms: int) -> Response:
        purchase = checked(await read_body(request, Purchase))
        wait = wait_published_ms / 1000
        if purchase.request_id is not None:
            seen = find_by_request(db.conn, purchase.request_id)
            if seen is not None:
                return json_response(await with_event(seen, wait), 200)
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
        purchases = [checked(p, f"orders[{i}]: ") for i, p in enumerate(batch.orders)]
        prices = await check_many(peers, purchases)
        return json_response(place_orders(db.conn, outbox, purchases, prices))

    async def get_many(request: Request, user_id: int, limit: int) -> Response:
        with db.span("SELECT", "orders", [user_id]) as span:
            found = orders_of(db.conn, user_id, limit)
            span["attributes"]["msshop.rows"] = len(found)
        return json_response({"user_id": user_id, "orders": found})

    async def get_one(request: Request, order_id: int) -> Response:
        row = db.conn.execute(f"SELECT {COLUMNS} FROM orders WHERE id = ?",
                              (order_id,)).fetchone()
        if row is None:
            raise HttpError(404, f"no order with id {order_id}")
        return json_response(as_dict(row))

    def health() -> dict[str, Any]:
        return {**db.health(), "outbox": outbox.health()}

    dependency = {502: "users or products refused the check (the message says how)",
                  503: "users or products is down or too slow (dependency, failure)"}
    return service_app(
        ctx.name,
        [
            Endpoint("POST", "/orders", post_order, "Buy a product", {
                201: (Order, "The new order, with its OrderPlaced event"),
                200: (Order, "The order this request_id already placed"),
                422: "Invalid, or no such user or product", **dependency},
                body=Purchase,
                params=[Param("wait_published_ms", Annotated[int, msgspec.Meta(
                    ge=0, le=MAX_WAIT_PUBLISHED_MS)], "wait up to this long for the event's "
                    "bus position (read-your-writes)", default=0)]),
            Endpoint("GET", "/orders", get_many, "A user's orders", {
                200: (OrdersOfUser, "The user's orders, oldest first")},
                params=[Param("user_id", Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)],
                              "the user", required=True,
                              missing="list a user's orders: GET /orders?user_id=U"),
                        Param("limit", Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH)],
                              "at most this many orders", default=MAX_BATCH)]),
            Endpoint("POST", "/orders/batch", post_batch, "Record many purchases", {
                200: (Created, "How many were new and how many known (by request_id)"),
                422: "Invalid, or no such user or product: nothing was recorded",
                **dependency},
                body=Purchases),
            Endpoint("GET", "/orders/{order_id}", get_one, "One order", {
                200: (Order, "The order"), 404: "No order with that id"},
                params=[path_id("order_id", "order")]),
        ],
        health,
        [db, peers, bus, outbox],
        ctx.tracer,
        ctx.admin,
        __doc__ or "",
    )
