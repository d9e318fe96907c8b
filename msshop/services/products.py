"""The products service: the catalogue (hats, pants, shoes ...). Owns products.db only.

    POST  /products          {"title", "price", "stock", "sku"?}  -> 201 product | 409 sku taken
    POST  /products/batch    {"products": [...]}   -> ids in input order (same sku: existing kept)
    GET   /products?limit=50&after=ID              -> {"products": [...], "next_after": ID|null}
    GET   /products?ids=1,2,3                      -> {"products": [...], "missing": [...]}
    GET   /products/{id}                           -> product | 404
    PATCH /products/{id}     {"price"?, "title"?}  -> product | 404

Prices travel as decimal numbers with at most two places and are stored as integer cents.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Annotated, Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from msshop.platform.context import ServiceContext
from msshop.platform.db import transaction
from msshop.platform.http import (
    MAX_BATCH,
    HttpError,
    id_param,
    ids_query,
    int_query,
    json_response,
    read_body,
    service_app,
)

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
]
COLUMNS = "id, sku, title, price_cents, stock, updated_at"
MAX_PRICE = 1_000_000


class NewProduct(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    price: float
    stock: int = 0
    sku: str | None = None


class NewProducts(msgspec.Struct, forbid_unknown_fields=True):
    products: Annotated[list[NewProduct], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class ProductChange(msgspec.Struct, forbid_unknown_fields=True):
    title: str | None = None
    price: float | None = None


def cents(price: float, where: str = "") -> int:
    value = round(price * 100)
    if not 0 <= price <= MAX_PRICE or abs(price * 100 - value) > 1e-6:
        raise HttpError(422, f"{where}price {price!r} must be from 0 to {MAX_PRICE} "
                             "with at most two decimal places")
    return value


def checked_title(title: str, where: str = "") -> str:
    title = title.strip()
    if not 1 <= len(title) <= 200:
        raise HttpError(422, f"{where}title must be 1 to 200 characters")
    return title


def checked(product: NewProduct, where: str = "") -> tuple[str | None, str, int, int]:
    if product.stock < 0:
        raise HttpError(422, f"{where}stock {product.stock} must be 0 or more")
    sku = product.sku.strip() if product.sku is not None else None
    if sku == "":
        raise HttpError(422, f"{where}sku must not be empty; leave it out instead")
    return sku, checked_title(product.title, where), cents(product.price, where), product.stock


def as_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"id": row[0], "sku": row[1], "title": row[2], "price": row[3] / 100,
            "stock": row[4], "updated_at": row[5]}


# --- plain functions over the connection -----------------------------------------------------


def create_product(conn: sqlite3.Connection, values: tuple[str | None, str, int, int]
                   ) -> dict[str, Any]:
    with transaction(conn):
        try:
            cursor = conn.execute(
                "INSERT INTO products (sku, title, price_cents, stock, updated_at) "
                "VALUES (?, ?, ?, ?, ?)", (*values, time.time()))
        except sqlite3.IntegrityError:
            raise HttpError(409, f"sku {values[0]} already names a product") from None
        product = get_product(conn, int(cursor.lastrowid or 0))
    assert product is not None
    return product


def create_products(conn: sqlite3.Connection, rows: list[tuple[str | None, str, int, int]]
                    ) -> dict[str, Any]:
    """Create each product whose sku is new; ids come back in input order. Safe to repeat."""
    now = time.time()
    ids: list[int] = []
    created = 0
    with transaction(conn):
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
            ids.append(int(cursor.lastrowid or 0))
            created += 1
    return {"ids": ids, "created": created}


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


def change_product(conn: sqlite3.Connection, product_id: int, change: ProductChange
                   ) -> dict[str, Any] | None:
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
    with transaction(conn):
        cursor = conn.execute(
            f"UPDATE products SET {', '.join(sets)}, updated_at = ? WHERE id = ?",
            (*params, time.time(), product_id))
        if cursor.rowcount == 0:
            return None
        return get_product(conn, product_id)


# --- HTTP ------------------------------------------------------------------------------------


def create_app(ctx: ServiceContext) -> Starlette:
    db = ctx.database(MIGRATIONS, ["products"])

    async def post_product(request: Request) -> Response:
        values = checked(await read_body(request, NewProduct))
        return json_response(create_product(db.conn, values), 201)

    async def post_batch(request: Request) -> Response:
        batch = await read_body(request, NewProducts)
        rows = [checked(p, f"products[{i}]: ") for i, p in enumerate(batch.products)]
        return json_response(create_products(db.conn, rows))

    async def get_many(request: Request) -> Response:
        ids = ids_query(request)
        if ids is not None:
            return json_response(get_products(db.conn, ids))
        after = int_query(request, "after", 0, 0, 2**62)
        limit = int_query(request, "limit", 50, 1, 1000)
        return json_response(list_products(db.conn, after, limit))

    async def get_one(request: Request) -> Response:
        product_id = id_param(request, "product_id")
        product = get_product(db.conn, product_id)
        if product is None:
            raise HttpError(404, f"no product with id {product_id}")
        return json_response(product)

    async def patch_one(request: Request) -> Response:
        product_id = id_param(request, "product_id")
        product = change_product(db.conn, product_id, await read_body(request, ProductChange))
        if product is None:
            raise HttpError(404, f"no product with id {product_id}")
        return json_response(product)

    return service_app(
        ctx.name,
        [
            Route("/products", post_product, methods=["POST"]),
            Route("/products", get_many, methods=["GET"]),
            Route("/products/batch", post_batch, methods=["POST"]),
            Route("/products/{product_id}", get_one, methods=["GET"]),
            Route("/products/{product_id}", patch_one, methods=["PATCH"]),
        ],
        db.health,
        [db],
    )
