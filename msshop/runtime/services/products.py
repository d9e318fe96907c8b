"""The products service: the catalogue (hats, pants, shoes ...). Owns products.db only.

    POST  /products          {"title", "price", "stock", "sku"?}  -> 201 product | 409 sku taken
    POST  /products/batch    {"products": [...]}   -> ids in input order (same sku: existing kept)
    GET   /products?limit=50&after=ID              -> {"products": [...], "next_after": ID|null}
    GET   /products?ids=1,2,3                      -> {"products": [...], "missing": [...]}
    GET   /products/{id}                           -> product | 404
    PATCH /products/{id}     {"price"?, "title"?}  -> product | 404
    POST  /products/takes    {"takes": [{purchase, product_id, quantity}]} -> each taken or not
    POST  /products/takes/give-back {"purchases": [...]}  -> {"given_back": N}
    POST  /products/stock    {"products": [{id, quantity}], "key"?}  -> restocked

The takes and give-backs take orders' credential only, restocks the sandbox's token only.

Stock is taken for purchases (orders asks, direct-call) and kept with its ledger, which
`msshop verify` reads (runtime/platform/ledger.py). In a saga (runtime/platform/saga.py)
products follows the bus: a pending OrderPlaced takes the stock (StockTaken, at the price,
or StockRefused), a CreditRefused gives it back (StockGivenBack).

Prices travel as decimal numbers with at most two places and are stored as integer cents.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from msshop.contracts import events
from msshop.contracts.events import (
    CreditRefusedData,
    Event,
    GiveBackData,
    OrderData,
    Received,
    StockGivenBackData,
    StockRefusedData,
    StockTakenData,
    TakeStockData,
)
from msshop.contracts.ledgers import STOCK
from msshop.contracts.limits import MAX_BATCH, MAX_ID, MAX_PRICE, MAX_SKU, MAX_STOCK, MAX_TITLE
from msshop.contracts.shop import Created, Product, ProductPage, ProductsFound
from msshop.contracts.takes import (
    GiveBack,
    Given,
    GivenBack,
    StockGiven,
    StockTakes,
    TakeOutcomes,
)
from msshop.runtime.platform import ledger
from msshop.runtime.platform.app import ServiceApp, service_app
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.db import transaction
from msshop.runtime.platform.http import HttpError, json_response, read_body
from msshop.runtime.platform.openapi import Endpoint, Param, documented, id_list, path_id
from msshop.runtime.platform.outbox import OUTBOX_SCHEMA, OUTBOX_TRACE_COLUMN, Outbox
from msshop.runtime.platform.saga import (
    SAGA_MIGRATION,
    Participant,
    Step,
    choreographed,
    outcome,
    pending,
)
from msshop.runtime.platform.saga_progress import progress_endpoint
from msshop.runtime.platform.tracing import current_trace_id, followed_span

MIGRATIONS = [
    """
    CREATE TABLE products (
        id INTEGER PRIMARY KEY,
        sku TEXT UNIQUE,
        title TEXT NOT NULL,
        price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
        stock INTEGER NOT NULL CHECK (stock >= 0),
        updated_at REAL NOT NULL
    )
    """,
    OUTBOX_SCHEMA + """;
    ALTER TABLE products ADD COLUMN version INTEGER NOT NULL DEFAULT 1
    """,
    OUTBOX_TRACE_COLUMN,
    STOCK.schema("SELECT id, stock, updated_at FROM products WHERE stock > 0"),
    SAGA_MIGRATION,
    STOCK.takes_without_rowid(),
]
COLUMNS = "id, sku, title, price_cents, stock, updated_at, version"


Title = Annotated[str, documented("spaces around it are dropped", minLength=1,
                                  maxLength=MAX_TITLE)]
Price = Annotated[float, documented("in the shop's currency, at most two decimal places",
                                    minimum=0, maximum=MAX_PRICE)]
MAX_PAGE = 1000  # products in one page of GET /products


class NewProduct(msgspec.Struct, forbid_unknown_fields=True):
    """A new product; its sku, if given, is unique in the shop."""

    title: Title
    price: Price
    stock: Annotated[int, msgspec.Meta(ge=0, le=MAX_STOCK)] = 0
    sku: Annotated[str, documented("spaces around it are dropped", minLength=1,
                                   maxLength=MAX_SKU)] | None = None


class NewProducts(msgspec.Struct, forbid_unknown_fields=True):
    """Products to create at once; those whose sku is known keep their id."""

    products: Annotated[list[NewProduct], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class ProductChange(msgspec.Struct, forbid_unknown_fields=True):
    """A new price and/or title (at least one)."""

    title: Title | None = None
    price: Price | None = None


def cents(price: float, where: str = "") -> int:
    # the range first: round() of a price near the float's limit would overflow
    if not 0 <= price <= MAX_PRICE or abs(price * 100 - round(price * 100)) > 1e-6:
        raise HttpError(422, f"{where}price {price!r} must be from 0 to {MAX_PRICE} "
                             "with at most two decimal places")
    return round(price * 100)


def checked_title(title: str, where: str = "") -> str:
    title = title.strip()
    if not 1 <= len(title) <= MAX_TITLE:
        raise HttpError(422, f"{where}title must be 1 to {MAX_TITLE} characters")
    return title


def checked(product: NewProduct, where: str = "") -> tuple[str | None, str, int, int]:
    """What the type does not enforce: the sku and title once trimmed, the price's
    decimals (the stock's range it does, bodies.py)."""
    sku = product.sku.strip() if product.sku is not None else None
    if sku == "":
        raise HttpError(422, f"{where}sku must not be empty; leave it out instead")
    if sku is not None and len(sku) > MAX_SKU:
        raise HttpError(422, f"{where}sku must be at most {MAX_SKU} characters")
    return sku, checked_title(product.title, where), cents(product.price, where), product.stock


def as_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"id": row[0], "sku": row[1], "title": row[2], "price": row[3] / 100,
            "stock": row[4], "updated_at": row[5], "version": row[6]}


def product_event(event_type: str, product: dict[str, Any]) -> Event:
    return events.make(event_type, "products", product["id"], product["version"],
                       {"id": product["id"], "sku": product["sku"], "title": product["title"],
                        "price": product["price"]},
                       current_trace_id(), product["updated_at"], followed_span())


# --- plain functions over the connection -----------------------------------------------------


def create_product(conn: sqlite3.Connection, outbox: Outbox,
                   values: tuple[str | None, str, int, int]) -> dict[str, Any]:
    with outbox.transaction(conn):
        try:
            cursor = conn.execute(
                "INSERT INTO products (sku, title, price_cents, stock, updated_at) "
                "VALUES (?, ?, ?, ?, ?)", (*values, time.time()))
        except sqlite3.IntegrityError:
            raise HttpError(409, f"sku {values[0]} already names a product") from None
        product = get_product(conn, int(cursor.lastrowid or 0))
        assert product is not None
        ledger.given_at_creation(conn, STOCK, [(product["id"], values[3])],
                                 product["updated_at"])
        outbox.add(conn, [product_event(events.PRODUCT_CREATED, product)])
    return product


def create_products(conn: sqlite3.Connection, outbox: Outbox,
                    rows: list[tuple[str | None, str, int, int]]) -> dict[str, Any]:
    """Create each product whose sku is new; ids come back in input order. Safe to repeat."""
    now = time.time()
    ids: list[int] = []
    created: list[Event] = []
    stocked: list[tuple[int, int]] = []
    with outbox.transaction(conn):
        for row in rows:
            sku = row[0]
            if sku is not None:
                found = conn.execute("SELECT id FROM products WHERE sku = ?", (sku,)).fetchone()
                if found is not None:
                    ids.append(found[0])
                    continue
            cursor = conn.execute(
                "INSERT INTO products (sku, title, price_cents, stock, updated_at) "
                "VALUES (?, ?, ?, ?, ?)", (*row, now))
            product_id = int(cursor.lastrowid or 0)
            ids.append(product_id)
            stocked.append((product_id, row[3]))
            created.append(product_event(events.PRODUCT_CREATED, {
                "id": product_id, "sku": sku, "title": row[1], "price": row[2] / 100,
                "updated_at": now, "version": 1}))
        ledger.given_at_creation(conn, STOCK, stocked, now)
        outbox.add(conn, created)
    return {"ids": ids, "created": len(created)}


def get_product(conn: sqlite3.Connection, product_id: int) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM products WHERE id = ?", (product_id,)).fetchone()
    return None if row is None else as_dict(row)


def get_products(conn: sqlite3.Connection, ids: list[int]) -> dict[str, Any]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM products WHERE id IN (SELECT value FROM json_each(?))",
        (msgspec.json.encode(ids),),
    ).fetchall()
    found = {row[0]: as_dict(row) for row in rows}
    return {"products": [found[i] for i in ids if i in found],
            "missing": [i for i in ids if i not in found]}


def list_products(conn: sqlite3.Connection, after: int, limit: int) -> dict[str, Any]:
    rows = conn.execute(f"SELECT {COLUMNS} FROM products WHERE id > ? ORDER BY id LIMIT ?",
                        (after, limit + 1)).fetchall()
    more = len(rows) > limit
    products = [as_dict(r) for r in rows[:limit]]
    return {"products": products, "next_after": products[-1]["id"] if more else None}


def change_product(conn: sqlite3.Connection, outbox: Outbox, product_id: int,
                   change: ProductChange) -> dict[str, Any] | None:
    sets: list[str] = []
    params: list[Any] = []
    if change.title is not None:
        sets.append("title = ?")
        params.append(checked_title(change.title))
    if change.price is not None:
        sets.append("price_cents = ?")
        params.append(cents(change.price))
    if not sets:
        raise HttpError(422, "nothing to change: send price and/or title")
    with outbox.transaction(conn):
        cursor = conn.execute(
            f"UPDATE products SET {', '.join(sets)}, updated_at = ?, version = version + 1 "
            "WHERE id = ?", (*params, time.time(), product_id))
        if cursor.rowcount == 0:
            return None
        product = get_product(conn, product_id)
        assert product is not None
        outbox.add(conn, [product_event(events.PRODUCT_UPDATED, product)])
    return product


def take_stock(conn: sqlite3.Connection, takes: StockTakes) -> TakeOutcomes:
    """Each purchase's stock, taken in turn while it lasts, in one transaction; a taken one
    says the unit price it was taken at (the price orders records)."""
    with transaction(conn):
        outcomes = ledger.take(conn, STOCK, [
            ledger.Take(t.purchase, t.product_id, t.quantity) for t in takes.takes])
        prices = dict(conn.execute(
            "SELECT id, price_cents FROM products WHERE id IN (SELECT value FROM json_each(?))",
            (msgspec.json.encode(list({t.product_id for t in takes.takes})),)).fetchall())
    return ledger.outcomes(outcomes, prices)


def _take(conn: sqlite3.Connection, order_id: int, purchase: str, user_id: int,
          product_id: int, quantity: int, cause: Received, reply_to: str | None) -> Event:
    """Take a purchase's stock (keyed by the purchase), at the price; StockTaken or
    StockRefused (`reply_to`: the command it answers, if one asked)."""
    taken, = ledger.take(conn, STOCK, [ledger.Take(purchase, product_id, quantity)])
    if not taken.taken:
        return outcome(events.STOCK_REFUSED, StockRefusedData(
            order_id, purchase, taken.reason or "refused", taken.status, reply_to), cause)
    (price,) = conn.execute("SELECT price_cents FROM products WHERE id = ?",
                            (product_id,)).fetchone()
    return outcome(events.STOCK_TAKEN, StockTakenData(
        order_id, purchase, user_id, product_id, quantity, price / 100, reply_to), cause)


def take_for_order(conn: sqlite3.Connection, order: OrderData, cause: Received) -> Event:
    """The choreography's step: take a pending order's stock as its OrderPlaced arrives."""
    return _take(conn, order.id, order.purchase or f"order-{order.id}", order.user_id,
                 order.product_id, order.quantity, cause, None)


def take_as_told(conn: sqlite3.Connection, command: TakeStockData, cause: Received) -> Event:
    """The orchestrator's TakeStock: the same take, the outcome its reply."""
    return _take(conn, command.order_id, command.purchase, command.user_id,
                 command.product_id, command.quantity, cause, cause.id)


def _give_back(conn: sqlite3.Connection, order_id: int, purchase: str, reason: str,
               cause: Received, reply_to: str | None) -> Event:
    took = conn.execute(f"SELECT holder_id, amount FROM {STOCK.name}_takes "
                        "WHERE purchase = ? AND given_back_at IS NULL", (purchase,)).fetchone()
    ledger.give_back(conn, STOCK, [purchase])
    product_id, quantity = (took[0] or 0, took[1]) if took is not None else (0, 0)
    return outcome(events.STOCK_GIVEN_BACK, StockGivenBackData(
        order_id, purchase, product_id, quantity, reason, reply_to), cause)


def give_back_for_order(conn: sqlite3.Connection, refusal: CreditRefusedData,
                        cause: Received) -> Event:
    """The choreography's compensation: users refused the credit, so the stock goes back."""
    return _give_back(conn, refusal.order_id, refusal.purchase, refusal.reason, cause, None)


def give_back_as_told(conn: sqlite3.Connection, command: GiveBackData, cause: Received
                      ) -> Event:
    """The orchestrator's GiveStockBack: what was taken for the purchase, if anything
    (nothing was: recorded, so that a take arriving later takes nothing)."""
    return _give_back(conn, command.order_id, command.purchase, command.reason, cause,
                      cause.id)


SAGA_STEPS: dict[str, Step[Any]] = {
    events.ORDER_PLACED: Step(OrderData, take_for_order, wanted=pending),
    events.CREDIT_REFUSED: Step(CreditRefusedData, give_back_for_order,
                                wanted=choreographed),
    events.TAKE_STOCK: Step(TakeStockData, take_as_told),
    events.GIVE_STOCK_BACK: Step(GiveBackData, give_back_as_told),
}


def restock(conn: sqlite3.Connection, given: StockGiven) -> Given:
    """Add stock to each product, all or nothing (an unknown id refuses the lot)."""
    with transaction(conn):
        missing = ledger.give(conn, STOCK, [(p.id, p.quantity) for p in given.products],
                              given.key)
        if missing:
            raise HttpError(422, f"product_id {missing[0]}: no such product; nothing was "
                                 "restocked")
    return Given(len({p.id for p in given.products}))


# --- HTTP ------------------------------------------------------------------------------------


def create_app(ctx: ServiceContext) -> ServiceApp:
    db = ctx.database(MIGRATIONS, ["products"])
    peers = ctx.peers()
    bus = ctx.bus(peers)
    outbox = Outbox("products", lambda: db.conn, bus, tracer=ctx.tracer, tasks=ctx.tasks)
    participant = Participant(ctx, db, bus, outbox, SAGA_STEPS)

    async def post_product(request: Request) -> Response:
        values = checked(await read_body(request, NewProduct))
        with db.span("INSERT", "products") as span:
            product = create_product(db.conn, outbox, values)
            span["attributes"]["msshop.keys"] = [product["id"]]
        return json_response(product, 201)

    async def post_batch(request: Request) -> Response:
        batch = await read_body(request, NewProducts)
        rows = [checked(p, f"products[{i}]: ") for i, p in enumerate(batch.products)]
        return json_response(create_products(db.conn, outbox, rows))

    async def get_many(request: Request, ids: list[int] | None, after: int, limit: int
                       ) -> Response:
        if ids is not None:
            with db.span("SELECT", "products", ids) as span:
                found = get_products(db.conn, ids)
                span["attributes"]["msshop.rows"] = len(found["products"])
            return json_response(found)
        with db.span("SELECT", "products") as span:
            page = list_products(db.conn, after, limit)
            span["attributes"]["msshop.rows"] = len(page["products"])
        return json_response(page)

    async def get_one(request: Request, product_id: int) -> Response:
        with db.span("SELECT", "products", [product_id]) as span:
            product = get_product(db.conn, product_id)
            span["attributes"]["msshop.rows"] = int(product is not None)
        if product is None:
            raise HttpError(404, f"no product with id {product_id}")
        return json_response(product)

    async def patch_one(request: Request, product_id: int) -> Response:
        change = await read_body(request, ProductChange)
        with db.span("UPDATE", "products", [product_id]):
            product = change_product(db.conn, outbox, product_id, change)
        if product is None:
            raise HttpError(404, f"no product with id {product_id}")
        return json_response(product)

    async def post_takes(request: Request) -> Response:
        takes = await read_body(request, StockTakes)
        with db.span("UPDATE", "products", [t.product_id for t in takes.takes]) as span:
            outcomes = take_stock(db.conn, takes)
            span["attributes"]["msshop.rows"] = len(takes.takes) - len(outcomes.refused)
        return json_response(outcomes)

    async def post_give_back(request: Request) -> Response:
        back = await read_body(request, GiveBack)
        with db.span("UPDATE", "products") as span, transaction(db.conn):
            given_back = ledger.give_back(db.conn, STOCK, back.purchases)
            span["attributes"]["msshop.rows"] = given_back
        return json_response(GivenBack(given_back))

    async def post_stock(request: Request) -> Response:
        given = await read_body(request, StockGiven)
        with db.span("UPDATE", "products", [p.id for p in given.products]):
            return json_response(restock(db.conn, given))

    def health() -> dict[str, Any]:
        return {**db.health(), "outbox": outbox.health(), "saga": participant.health()}

    product_id = path_id("product_id", "product")
    return service_app(
        ctx.name,
        [
            Endpoint("POST", "/products", post_product, "Add a product", {
                201: (Product, "The new product"), 409: "That sku already names a product"},
                body=NewProduct),
            Endpoint("GET", "/products", get_many, "Products by id, or a page of all", {
                200: (ProductsFound | ProductPage,
                      "With ids: the products found and the ids not found; without: a "
                      "page of products in id order")},
                params=[id_list("product"),
                        Param("after", Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)],
                              "the page after this id (next_after of the last page)",
                              default=0),
                        Param("limit", Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)],
                              "products in the page", default=50)]),
            Endpoint("POST", "/products/batch", post_batch, "Add many products", {
                200: (Created, "Every product's id, in input order, and how many were new")},
                body=NewProducts),
            Endpoint("GET", "/products/{product_id}", get_one, "One product", {
                200: (Product, "The product"), 404: "No product with that id"},
                params=[product_id]),
            Endpoint("PATCH", "/products/{product_id}", patch_one,
                     "Change a product's price or title", {
                         200: (Product, "The product, changed"),
                         404: "No product with that id"},
                     body=ProductChange, params=[product_id]),
            Endpoint("POST", "/products/takes", post_takes,
                     "Take stock for purchases (orders asks: direct-call)", {
                         200: (TakeOutcomes, "The takes refused, with the reason; every "
                                             "other was taken (with the unit prices)")},
                     body=StockTakes, auth="services",
                     action="taking stock for a purchase"),
            Endpoint("POST", "/products/takes/give-back", post_give_back,
                     "Give back the stock of purchases refused elsewhere", {
                         200: (GivenBack, "How many takes went back")},
                     body=GiveBack, auth="services",
                     action="giving stock back"),
            Endpoint("POST", "/products/stock", post_stock, "Restock products", {
                200: (Given, "How many products were given stock"),
                422: "No such product: nothing was restocked"},
                body=StockGiven, auth="owner", action="restocking"),
            progress_endpoint(ctx.name, db, STOCK),
        ],
        health,
        [db, peers, bus, outbox, participant],
        ctx.tracer,
        ctx.admin,
        __doc__ or "",
        senders=ctx.senders,  # orders' credential: its purchases take stock
    )
