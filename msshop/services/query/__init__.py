"""The query service ("Service D"): which products did user U order?

It owns query.db and nothing else: no other service's file, ever. It answers by one of two
strategies, chosen per request:

    GET /user-orders/{user_id}?strategy=replicated            (the default)
    GET /user-orders/{user_id}?strategy=direct-call[&fanout=batched|naive]
    GET /bench/floor/{user_id}   one indexed read of its own file: the stack's floor

- replicated: from its own read model, built by consuming the bus; the answer says how
  fresh it is (position applied, bus head last seen) and the trace names the events the
  rows came from.
- direct-call: asks users, orders and products over HTTP (see direct_call.py).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from msshop.platform.consumer import CONSUMER_SCHEMA, Consumer
from msshop.platform.context import ServiceContext
from msshop.platform.http import HttpError, id_param, json_response, service_app
from msshop.platform.tracing import current_trace_id
from msshop.services.query import direct_call, projection, replicated

MIGRATIONS = [projection.SCHEMA + ";" + CONSUMER_SCHEMA]
STRATEGIES = ("replicated", "direct-call")
SOURCES_IN_TRACE = 50  # events named in a span; the count is always there


def events_by_type(used: list[dict[str, Any]]) -> list[str]:
    """'139 OrderPlaced from orders @ 12-2251' for each kind of event the rows came from."""
    groups: dict[tuple[str, str], list[int]] = {}
    for event in used:
        groups.setdefault((event["type"], event["source"]), []).append(event["position"])
    return [f"{len(p)} {kind} from {source} @ " + (f"{p[0]}" if len(p) == 1 else
                                                  f"{min(p)}-{max(p)}")
            for (kind, source), p in groups.items()]


def create_app(ctx: ServiceContext) -> Starlette:
    db = ctx.database(MIGRATIONS, projection.TABLES)
    peers = ctx.peers()
    consumer = Consumer("query", lambda: db.conn, peers, projection.apply)

    async def user_orders(request: Request) -> Response:
        user_id = id_param(request, "user_id")
        strategy = request.query_params.get("strategy", "replicated")
        if strategy not in STRATEGIES:
            raise HttpError(422, f"strategy {strategy!r} is not one of: "
                                 + ", ".join(STRATEGIES))
        fanout = request.query_params.get("fanout", "batched")
        if fanout not in direct_call.FANOUTS:
            raise HttpError(422, f"fanout {fanout!r} is not one of: "
                                 + ", ".join(direct_call.FANOUTS))
        answer: dict[str, Any] = {"question": "user-orders", "strategy": strategy}
        if strategy == "replicated":
            answer.update(read_replicated(user_id))
        else:
            user, orders = await direct_call.user_orders(peers, user_id, fanout)
            answer.update(fanout=fanout, user=user, orders=orders,
                          freshness={"live": True})
        answer["trace_id"] = current_trace_id()
        return json_response(answer)

    def read_replicated(user_id: int) -> dict[str, Any]:
        freshness = consumer.freshness()
        with db.span("SELECT", "users_replica", [user_id]) as span:
            user, user_source = replicated.find_user(db.conn, user_id)
            span["attributes"]["msshop.rows"] = int(user is not None)
        if user is None:
            raise HttpError(404, f"no user with id {user_id} (the read model has applied the "
                                 f"bus up to position {freshness['position']})",
                            freshness=freshness)
        assert user_source is not None
        with db.span("SELECT", "orders_replica JOIN products_replica", [user_id]) as span:
            orders, sources = replicated.orders_of(db.conn, user_id)
            attributes = span["attributes"]
            attributes["msshop.rows"] = len(orders)
            used = sorted([user_source, *sources.values()], key=lambda e: e["position"])
            attributes["msshop.events.count"] = len(used)
            attributes["msshop.events.by_type"] = events_by_type(used)
            attributes["msshop.events"] = [f"{e['type']} from {e['source']} @ {e['position']}"
                                           for e in used[:SOURCES_IN_TRACE]]
            for key in ("position", "bus_head", "behind"):
                attributes[f"msshop.freshness.{key}"] = freshness[key]
        return {"user": user, "orders": orders, "freshness": freshness}

    async def floor(request: Request) -> Response:
        user_id = id_param(request, "user_id")
        row = db.conn.execute("SELECT id, name FROM users_replica WHERE id = ?",
                              (user_id,)).fetchone()
        return json_response({"id": row[0], "name": row[1]} if row else None)

    def health() -> dict[str, Any]:
        return {**db.health(), "consumer": consumer.health()}

    return service_app(
        ctx.name,
        [Route("/user-orders/{user_id}", user_orders, methods=["GET"]),
         Route("/bench/floor/{user_id}", floor, methods=["GET"])],
        health,
        [db, peers, consumer],
        ctx.tracer,
    )
