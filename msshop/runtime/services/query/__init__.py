"""The query service ("Service D"): which products did user U order?

It owns query.db and nothing else: no other service's file, ever. It answers by one of two
strategies, chosen per request:

    GET /user-orders/{user_id}?strategy=replicated            (the default)
        [&after=POSITION&wait_ms=2000]   read-your-writes: wait until POSITION is applied
        [&kept=0]                        read the file even if the answer is kept (verify)
    GET /user-orders/{user_id}?strategy=direct-call[&fanout=batched|naive][&partial=1]
    GET /bench/floor/{user_id}   one indexed read of its own file: the stack's floor
    GET /bench/floor-rows/{user_id}   the replicated answer's rows, read and encoded: the
                                 floor with the answer's payload (no trace, no freshness)
    GET /bench/lag?since=T       replication lag of the events that occurred since T
    GET /dead-letters?limit=N    events the read model could not apply, with the reason
    POST /replay                 rebuild the read model from position 0 (sandbox token)

- replicated: from its own read model, built by consuming the bus; the answer says how
  fresh it is (position applied, bus head last seen) and the trace names the events the
  rows came from. A user's answer, once read, is kept until an event changes it (kept.py).
- direct-call: asks users, orders and products over HTTP (see direct_call.py).
"""

from __future__ import annotations

import sqlite3
from typing import Annotated, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from msshop.bus.interface import BusUnavailable
from msshop.contracts.answers import QUESTION, UserOrders
from msshop.contracts.events import Received
from msshop.contracts.limits import MAX_ID
from msshop.contracts.shop import DeadLetters, Floor, FloorRows, Lags, Replayed
from msshop.contracts.strategies import SERVED, ReadStrategy
from msshop.runtime.platform.app import ServiceApp, service_app
from msshop.runtime.platform.consumer import CONSUMER_LOG_COLUMN, CONSUMER_SCHEMA, Consumer
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.http import HttpError, json_response
from msshop.runtime.platform.openapi import Endpoint, Param, path_id
from msshop.runtime.platform.tracing import current_trace_id
from msshop.runtime.services.query import direct_call, projection, rebuild, replicated
from msshop.runtime.services.query.kept import MIB, Answers

MIGRATIONS = [projection.SCHEMA + ";" + CONSUMER_SCHEMA, CONSUMER_LOG_COLUMN,
              projection.STATUS_COLUMNS]
SOURCES_IN_TRACE = 20  # events named in a span; all are counted by kind
MAX_WAIT_MS = 30_000  # read-your-writes: the longest wait for a position
MAX_DEAD_LETTERS = 10_000  # in one answer


def create_app(ctx: ServiceContext) -> ServiceApp:
    db = ctx.database(MIGRATIONS, projection.TABLES)
    peers = ctx.peers()
    bus = ctx.bus(peers)
    answers = Answers(ctx.kept_mib * MIB)
    write = projection.dropping_for_tests()

    def apply(conn: sqlite3.Connection, event: Received, position: int) -> bool | None:
        applied = write(conn, event, position)
        answers.applied(event)
        return applied  # False: a saga's step, skipped (no span of it)

    consumer = Consumer("query", lambda: db.conn, bus, apply, tracer=ctx.tracer,
                        db_name=db.file_name, tasks=ctx.tasks)

    async def user_orders(request: Request, user_id: int, strategy: ReadStrategy,
                          fanout: str, partial: bool, after: int, wait_ms: int, kept: bool
                          ) -> Response:
        if strategy is ReadStrategy.REPLICATED:
            if after > consumer.position:
                await wait_for_position(after, wait_ms)
            return json_response(read_replicated(user_id, kept))
        user, orders, missing = await direct_call.user_orders(peers, user_id, fanout,
                                                              partial)
        answer: UserOrders = {
            "question": QUESTION, "strategy": strategy, "fanout": fanout, "user": user,
            "orders": orders, "freshness": {"live": True}}
        if partial:
            answer["partial"], answer["missing"] = bool(missing), missing
        answer["trace_id"] = current_trace_id()
        return json_response(answer)

    async def wait_for_position(after: int, wait_ms: int) -> None:
        """Read-your-writes: hold the answer until the read model has applied `after`."""
        if not await consumer.wait_for(after, wait_ms / 1000):
            raise HttpError(503, f"the read model has not applied bus position {after} within "
                                 f"{wait_ms} ms (it is at {consumer.position} of "
                                 f"{consumer.head}); try again, or ask with a longer wait_ms",
                            freshness=consumer.freshness())

    def read_replicated(user_id: int, use_kept: bool) -> dict[str, Any]:
        """UserOrders, with the user and orders as the bytes kept for them (msgspec.Raw).
        Not `use_kept`: read from the file (and keep that), as an audit must."""
        freshness = consumer.freshness()
        if consumer.catching_up_to is not None:
            raise HttpError(503, f"not ready: catching up (position {consumer.position} of "
                                 f"{consumer.catching_up_to}); ask again in a moment, or ask with "
                                 "strategy=direct-call", freshness=freshness)
        with db.span("SELECT", "users_replica, orders_replica", [user_id]) as span:
            attributes = span["attributes"]
            answer = answers.get(user_id) if use_kept else None
            if answer is not None:
                attributes["msshop.kept_at"] = answer.position
            else:
                user, orders, sources = replicated.user_orders(db.conn, user_id,
                                                               SOURCES_IN_TRACE)
                if user is not None:
                    answer = answers.keep(user_id, user, orders, sources, consumer.position)
            attributes["msshop.rows"] = answer.rows if answer is not None else 0
            # kept as data, put into words only when someone reads the trace
            if answer is not None:
                attributes["msshop.events.count"] = answer.sources["count"]
                attributes["msshop.events.kinds"] = answer.sources["kinds"]
                attributes["msshop.events"] = answer.sources["named"]
            attributes["msshop.freshness.position"] = freshness["position"]
            attributes["msshop.freshness.bus_head"] = freshness["bus_head"]
        if answer is None:
            raise HttpError(404, f"no user with id {user_id} (the read model has applied the "
                                 f"bus up to position {freshness['position']})",
                            freshness=freshness)
        return {"question": QUESTION, "strategy": ReadStrategy.REPLICATED, "user": answer.user,
                "orders": answer.orders, "freshness": freshness,
                "trace_id": current_trace_id()}

    async def floor(request: Request, user_id: int) -> Response:
        row = db.conn.execute("SELECT id, name FROM users_replica WHERE id = ?",
                              (user_id,)).fetchone()
        return json_response({"id": row[0], "name": row[1]} if row else None)

    async def floor_rows(request: Request, user_id: int) -> Response:
        user, orders = replicated.answer_of(replicated.rows_of(db.conn, user_id))
        return json_response({"user": user, "orders": orders})

    async def lag(request: Request, since: float) -> Response:
        """Replication lag of the events since a time: commit at the source -> applied here."""
        return json_response({"lags_ms": consumer.lag_since(since)})

    async def dead_letters(request: Request, limit: int) -> Response:
        rows = db.conn.execute(
            "SELECT position, event_id, type, reason, dead_at, body FROM dead_letters "
            "ORDER BY position DESC LIMIT ?", (limit,)).fetchall()
        return json_response({"count": consumer.dead, "dead_letters": [
            {"position": p, "event_id": i, "type": t, "reason": r, "dead_at": at,
             "body": bytes(b[:500]).decode(errors="replace")} for p, i, t, r, at, b in rows]})

    rebuilding: list[bool] = []

    async def replay(request: Request) -> Response:
        """Rebuild the read model from position 0 of the bus, then swap it in."""
        if rebuilding:
            raise HttpError(409, "a rebuild is already running; wait for it to finish")
        rebuilding.append(True)
        try:
            return json_response(await rebuild.rebuild(lambda: db.conn, bus, consumer,
                                                       swapped=answers.forget_all))
        except BusUnavailable as exc:  # the old read model stays, and the live consumer goes on
            raise HttpError(503, f"the rebuild stopped, nothing was swapped: {exc.message}",
                            dependency="bus") from None
        finally:
            rebuilding.clear()

    def health() -> dict[str, Any]:
        return {**db.health(), "consumer": consumer.health(), "rebuilding": bool(rebuilding),
                "kept": answers.health()}

    user_id = path_id("user_id", "user")
    position = Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]
    return service_app(
        ctx.name,
        [Endpoint("GET", "/user-orders/{user_id}", user_orders,
                  "Which products did this user order?", {
                      200: (UserOrders, "The user, their orders with product titles, and "
                                        "how fresh the answer is"),
                      404: "No such user (replicated: the read model has not seen them)",
                      502: "direct-call: a service refused a call (dependency, failure)",
                      503: "direct-call: a service is down or too slow (dependency, "
                           "failure); replicated: catching up, or position `after` not "
                           "applied within wait_ms (freshness)"},
                  params=[user_id,
                          Param("strategy", Literal[SERVED],
                                "read the replicated read model, or ask the services now",
                                default=ReadStrategy.REPLICATED),
                          Param("fanout", Literal[direct_call.FANOUTS],
                                "direct-call: one products call for all orders, or one per "
                                "order (N+1)", default="batched"),
                          Param("partial", bool, "direct-call: answer with what could be "
                                "had, and say what is missing", default=False),
                          Param("after", position, "replicated: first wait until the read "
                                "model has applied this bus position", default=0),
                          Param("wait_ms", Annotated[int, msgspec.Meta(ge=0, le=MAX_WAIT_MS)],
                                "replicated, with after: wait at most this long",
                                default=2000),
                          Param("kept", bool, "replicated: answer from the copy kept since "
                                "the last read, if any (0: read the file)", default=True)]),
         Endpoint("GET", "/bench/floor/{user_id}", floor, "The stack's floor: one indexed read",
                  {200: (Floor | None, "The user's id and name in the read model (null: "
                                       "not there)")}, params=[user_id]),
         Endpoint("GET", "/bench/floor-rows/{user_id}", floor_rows,
                  "The floor with the replicated answer's payload: the user's rows, read "
                  "and encoded", {200: (FloorRows, "The user (null: not there) and their "
                                                   "orders, as in a replicated answer")},
                  params=[user_id]),
         Endpoint("GET", "/bench/lag", lag, "Replication lags since a time", {
             200: (Lags, "Commit at the source to applied here, in ms, sorted")},
             params=[Param("since", float, "unix seconds", default=0)], auth="owner",
             action="reading replication lags"),
         Endpoint("GET", "/dead-letters", dead_letters, "Events the read model could not apply",
                  {200: (DeadLetters, "How many, and the newest, with the reason")},
                  params=[Param("limit", Annotated[int, msgspec.Meta(
                      ge=1, le=MAX_DEAD_LETTERS)], "at most this many", default=50)],
                  auth="owner", action="reading dead letters"),  # they hold events' data
         Endpoint("POST", "/replay", replay, "Rebuild the read model from position 0", {
             200: (Replayed, "The rebuild's figures"),
             409: "A rebuild is already running",
             503: "The bus failed: nothing was swapped (dependency)"}, auth="owner",
             action="replay")],
        health,
        [db, peers, bus, consumer],
        ctx.tracer,
        ctx.admin,
        __doc__ or "",
    )
