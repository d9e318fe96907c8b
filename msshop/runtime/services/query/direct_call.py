"""user-orders by API composition: ask users, orders and products over HTTP, at query time.

Fresh, but every answer needs all three services up and fast. `batched` (the default) makes
two sequential network stages whatever the number of orders: users ∥ orders, then one
products call for all the distinct products. `naive` makes one products call per order,
one after the other: the N+1 pattern, to show what it costs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from msshop.contracts.answers import CONFIRMED, Buyer, Gap, OrderLine, order_line
from msshop.contracts.limits import MAX_BATCH
from msshop.runtime.platform.http import HttpError
from msshop.runtime.platform.peers import Peers, Reply

FANOUTS = ("batched", "naive")


def _ok(reply: Reply, service: str) -> Any:
    if reply.status != 200:
        detail = reply.data.get("error") if isinstance(reply.data, dict) else reply.data
        raise HttpError(502, f"{service} answered HTTP {reply.status}: {detail}",
                        dependency=service, failure="4xx")
    return reply.data


async def user_orders(peers: Peers, user_id: int, fanout: str, partial: bool = False
                      ) -> tuple[Buyer, list[OrderLine], list[Gap]]:
    """(user, orders, missing). Without `partial`, any dependency that fails fails the
    answer (a 503 naming it). With `partial`, as a degrading gateway would, the parts that
    could be had come back and `missing` says which service failed, how, and what is
    missing because of it (the user's name, the orders, the product titles)."""
    missing: list[Gap] = []

    async def get(service: str, path: str, what: str) -> Reply | None:
        try:
            return await peers.get(service, path)
        except HttpError as exc:
            if not partial:
                raise
            missing.append({"service": service, "failure": exc.extra.get("failure"),
                            "error": exc.message, "missing": what})
            return None

    user_reply, orders_reply = await asyncio.gather(
        get("users", f"/users/{user_id}", "the user's name and email"),
        get("orders", f"/orders?user_id={user_id}", "the orders"),
    )
    if user_reply is not None and user_reply.status == 404:
        raise HttpError(404, f"no user with id {user_id}")
    found = None if user_reply is None else _ok(user_reply, "users")
    user: Buyer = {"id": user_id, "name": found["name"] if found else None,
                   "email": found["email"] if found else None}
    placed = [] if orders_reply is None else _ok(orders_reply, "orders")["orders"]
    try:
        products = await (_products_batched(peers, placed) if fanout == "batched"
                          else _products_naive(peers, placed))
    except HttpError as exc:
        if not partial:
            raise
        missing.append({"service": "products", "failure": exc.extra.get("failure"),
                        "error": exc.message, "missing": "the product titles"})
        products = {}
    orders = []
    for order in placed:
        product = products.get(order["product_id"])
        # status as orders says it (an orders of your own that does not: confirmed)
        orders.append(order_line(order["id"], order["product_id"],
                                 product["title"] if product else None, order["quantity"],
                                 round(order["unit_price"] * 100),
                                 order.get("status", CONFIRMED), order.get("reason")))
    return user, orders, missing


async def _products_batched(peers: Peers, orders: list[dict[str, Any]]
                            ) -> dict[int, dict[str, Any]]:
    ids = list(dict.fromkeys(o["product_id"] for o in orders))
    chunks = [ids[i:i + MAX_BATCH] for i in range(0, len(ids), MAX_BATCH)]
    replies = await asyncio.gather(*(
        peers.get("products", "/products?ids=" + ",".join(map(str, chunk))) for chunk in chunks))
    found: dict[int, dict[str, Any]] = {}
    for reply in replies:
        found.update((p["id"], p) for p in _ok(reply, "products")["products"])
    return found


async def _products_naive(peers: Peers, orders: list[dict[str, Any]]
                          ) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for order in orders:  # one call per order, one after the other: N+1
        reply = await peers.get("products", f"/products/{order['product_id']}")
        if reply.status != 404:
            product = _ok(reply, "products")
            found[product["id"]] = product
    return found
