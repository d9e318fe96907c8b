"""POST /saga/progress: what a participant of the choreographed saga has done for some
purchases (issue 28). The dashboard asks products and users, and puts each pending saga's
step together from their answers (contracts/saga_progress.py), because no one service
knows it; `msshop sagas` reads the same rows from the files.

Read from the participant's own file: `saga_steps` (the saga's events it has applied, by
order) and its ledger's takes (by the purchase's key). Owner-only, as /spans: it names
purchases. Not traced and free of chaos, as /health: the dashboard asks it while it
watches, and a fault injected for the lesson should not hide the lesson's picture.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from msshop.contracts.ledgers import Book
from msshop.contracts.saga_progress import Done, Progress, ProgressAsked
from msshop.runtime.platform.db import Database
from msshop.runtime.platform.http import json_response, read_body
from msshop.runtime.platform.openapi import Endpoint


def progress(conn: sqlite3.Connection, book: Book, asked: ProgressAsked) -> list[Done]:
    """Each purchase asked, in order: the steps applied for its order, and its take."""
    orders = msgspec.json.encode([p.order_id for p in asked.purchases])
    keys = msgspec.json.encode([p.purchase for p in asked.purchases])
    steps: defaultdict[int, list[str]] = defaultdict(list)
    for order_id, step in conn.execute(
            "SELECT order_id, step FROM saga_steps WHERE order_id IN "
            "(SELECT value FROM json_each(?)) ORDER BY done_at", (orders,)):
        steps[order_id].append(step)
    held = {key: back is None for key, back in conn.execute(
        f"SELECT purchase, given_back_at FROM {book.name}_takes WHERE purchase IN "
        "(SELECT value FROM json_each(?))", (keys,))}
    return [Done(p.order_id, steps.get(p.order_id, []), held.get(p.purchase))
            for p in asked.purchases]


def progress_endpoint(service: str, db: Database, book: Book) -> Endpoint:
    async def post_progress(request: Request) -> Response:
        asked = await read_body(request, ProgressAsked)
        return json_response(Progress(service, progress(db.conn, book, asked)))

    return Endpoint("POST", "/saga/progress", post_progress,
                    "What this participant has done for pending purchases (the dashboard "
                    "puts a choreographed saga's step together from it)", {
                        200: (Progress, "For each purchase, in the order asked: the saga's "
                                        "events applied for its order, and its take")},
                    body=ProgressAsked, auth="owner", action="reading a saga's progress",
                    chaos=False, traced=False)
