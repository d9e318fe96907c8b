"""The users service: sign up, look users up. Owns users.db and nothing else.

    POST /users           {"email", "name", "credit"?}  -> 201 user | 409 email taken
    POST /users/batch     {"users": [{email, name, credit?}]} -> ids in input order
    GET  /users/{id}                                  -> user | 404
    GET  /users?ids=1,2,3                             -> {"users": [...], "missing": [...]}
    POST /users/takes     {"takes": [{purchase, user_id, amount_cents}]} -> each taken or not
    POST /users/takes/give-back {"purchases": [...]}  -> {"given_back": N}
    POST /users/credit    {"users": [{id, amount}], "key"?}  -> topped up

The takes and give-backs take orders' credential only, top-ups the sandbox's token only.

Each user has a credit (in the shop's currency, kept in cents, never below zero) that
purchases take (orders asks, direct-call), kept with its ledger, which `msshop verify`
reads (runtime/platform/ledger.py). In a saga (runtime/platform/saga.py) users follows
the bus: a StockTaken takes quantity x unit price of credit (CreditTaken, or CreditRefused).
"""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from msshop.contracts import events
from msshop.contracts.events import (
    CreditGivenBackData,
    CreditRefusedData,
    CreditTakenData,
    Event,
    GiveBackData,
    Received,
    StockTakenData,
    TakeCreditData,
)
from msshop.contracts.ledgers import CREDIT
from msshop.contracts.limits import MAX_BATCH, MAX_EMAIL, MAX_NAME
from msshop.contracts.shop import Created, User, UsersFound
from msshop.contracts.takes import (
    MAX_CREDIT_CENTS,
    CreditGiven,
    CreditTakes,
    GiveBack,
    Given,
    GivenBack,
    TakeOutcomes,
)
from msshop.runtime.platform import ledger
from msshop.runtime.platform.app import ServiceApp, service_app
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.db import transaction
from msshop.runtime.platform.http import HttpError, json_response, read_body
from msshop.runtime.platform.openapi import Endpoint, documented, id_list, path_id
from msshop.runtime.platform.outbox import OUTBOX_SCHEMA, OUTBOX_TRACE_COLUMN, Outbox
from msshop.runtime.platform.saga import (
    SAGA_MIGRATION,
    Participant,
    Step,
    choreographed,
    outcome,
)
from msshop.runtime.platform.saga_progress import progress_endpoint
from msshop.runtime.platform.tracing import current_trace_id, followed_span

DEFAULT_CREDIT = 1000.0  # a new user's credit unless the sign-up says
MAX_CREDIT = MAX_CREDIT_CENTS / 100
MIGRATIONS = [
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        created_at REAL NOT NULL
    )
    """,
    OUTBOX_SCHEMA,
    OUTBOX_TRACE_COLUMN,
    # users already signed up are given the default credit (and the ledger says so)
    "ALTER TABLE users ADD COLUMN credit_cents INTEGER NOT NULL DEFAULT "
    f"{round(DEFAULT_CREDIT * 100)} CHECK (credit_cents >= 0);"
    + CREDIT.schema("SELECT id, credit_cents, created_at FROM users WHERE credit_cents > 0"),
    SAGA_MIGRATION,
    CREDIT.takes_without_rowid(),
]
# no NUL either: SQLite's own text functions (json_each) end a string at one
EMAIL_PATTERN = r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$"
EMAIL = re.compile(EMAIL_PATTERN)
COLUMNS = "id, email, name, created_at, credit_cents"


class SignUp(msgspec.Struct, forbid_unknown_fields=True):
    """A new user. Spaces around either are dropped; the email is kept lower-case."""

    email: Annotated[str, documented("an email address, unique in the shop", minLength=3,
                                     maxLength=MAX_EMAIL, pattern=EMAIL_PATTERN)]
    name: Annotated[str, documented(minLength=1, maxLength=MAX_NAME)]
    credit: Annotated[float, documented(
        f"what the user may spend, at most two decimal places (default {DEFAULT_CREDIT:g})",
        minimum=0, maximum=MAX_CREDIT)] = DEFAULT_CREDIT


class SignUpBatch(msgspec.Struct, forbid_unknown_fields=True):
    """Users to sign up at once; those whose email is known keep their id."""

    users: Annotated[list[SignUp], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


def checked(signup: SignUp, where: str = "") -> SignUp:
    email = signup.email.strip().lower()
    name = signup.name.strip()
    if len(email) > MAX_EMAIL:
        raise HttpError(422, f"{where}email must be at most {MAX_EMAIL} characters")
    if not EMAIL.match(email):
        raise HttpError(422, f"{where}email {signup.email!r} is not an email address")
    if not 1 <= len(name) <= MAX_NAME:
        raise HttpError(422, f"{where}name must be 1 to {MAX_NAME} characters")
    return SignUp(email=email, name=name, credit=credit_cents(signup.credit, where) / 100)


def credit_cents(credit: float, where: str = "") -> int:
    # the range first: round() of an amount near the float's limit would overflow
    if not 0 <= credit <= MAX_CREDIT or abs(credit * 100 - round(credit * 100)) > 1e-6:
        raise HttpError(422, f"{where}credit {credit!r} must be from 0 to {MAX_CREDIT:.0f} "
                             "with at most two decimal places")
    return round(credit * 100)


def as_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"id": row[0], "email": row[1], "name": row[2], "created_at": row[3],
            "credit": row[4] / 100}


# --- plain functions over the connection: the service's logic ------------------------------


def signed_up(user: dict[str, Any]) -> Event:
    return events.make(events.USER_SIGNED_UP, "users", user["id"], 1,
                       {"id": user["id"], "email": user["email"], "name": user["name"]},
                       current_trace_id(), user["created_at"], followed_span())


def sign_up(conn: sqlite3.Connection, outbox: Outbox, signup: SignUp) -> dict[str, Any]:
    with outbox.transaction(conn):
        try:
            cursor = conn.execute(
                "INSERT INTO users (email, name, created_at, credit_cents) "
                "VALUES (?, ?, ?, ?)",
                (signup.email, signup.name, time.time(), credit_cents(signup.credit)),
            )
        except sqlite3.IntegrityError:
            raise HttpError(409, f"email {signup.email} is already signed up") from None
        user = as_dict(conn.execute(f"SELECT {COLUMNS} FROM users WHERE id = ?",
                                    (cursor.lastrowid,)).fetchone())
        ledger.given_at_creation(conn, CREDIT, [(user["id"], credit_cents(signup.credit))],
                                 user["created_at"])
        outbox.add(conn, [signed_up(user)])
    return user


def sign_up_many(conn: sqlite3.Connection, outbox: Outbox, signups: list[SignUp]
                 ) -> dict[str, Any]:
    """Sign up those not yet known; return every id in input order. Safe to repeat."""
    now = time.time()
    emails = msgspec.json.encode([s.email for s in signups])
    find = "SELECT email, id FROM users WHERE email IN (SELECT value FROM json_each(?))"
    with outbox.transaction(conn):
        known = dict(conn.execute(find, (emails,)).fetchall())
        new = list({s.email: s for s in signups if s.email not in known}.values())
        conn.executemany("INSERT INTO users (email, name, created_at, credit_cents) "
                         "VALUES (?, ?, ?, ?)",
                         [(s.email, s.name, now, credit_cents(s.credit)) for s in new])
        ids = dict(conn.execute(find, (emails,)).fetchall())
        ledger.given_at_creation(conn, CREDIT, [(ids[s.email], credit_cents(s.credit))
                                                for s in new], now)
        outbox.add(conn, [signed_up({"id": ids[s.email], "email": s.email, "name": s.name,
                                     "created_at": now}) for s in new])
    return {"ids": [ids[s.email] for s in signups], "created": len(new)}


def get_user(conn: sqlite3.Connection, user_id: int) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone()
    return None if row is None else as_dict(row)


def get_users(conn: sqlite3.Connection, ids: list[int]) -> dict[str, Any]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM users WHERE id IN (SELECT value FROM json_each(?))",
        (msgspec.json.encode(ids),),
    ).fetchall()
    found = {row[0]: as_dict(row) for row in rows}
    return {"users": [found[i] for i in ids if i in found],
            "missing": [i for i in ids if i not in found]}


def take_credit(conn: sqlite3.Connection, takes: CreditTakes) -> TakeOutcomes:
    """Each purchase's credit, taken in turn while it lasts, in one transaction."""
    with transaction(conn):
        outcomes = ledger.take(conn, CREDIT, [
            ledger.Take(t.purchase, t.user_id, t.amount_cents) for t in takes.takes])
    return ledger.outcomes(outcomes)


def _take(conn: sqlite3.Connection, order_id: int, purchase: str, user_id: int,
          amount_cents: int, unit_price: float, cause: Received, reply_to: str | None
          ) -> Event:
    """Take a purchase's credit (keyed by the purchase): CreditTaken or CreditRefused
    (`reply_to`: the command it answers, if one asked)."""
    taken, = ledger.take(conn, CREDIT, [ledger.Take(purchase, user_id, amount_cents)])
    if not taken.taken:
        return outcome(events.CREDIT_REFUSED, CreditRefusedData(
            order_id, purchase, taken.reason or "refused", taken.status, unit_price,
            reply_to), cause)
    return outcome(events.CREDIT_TAKEN, CreditTakenData(
        order_id, purchase, user_id, amount_cents / 100, unit_price, reply_to), cause)


def take_for_order(conn: sqlite3.Connection, stock: StockTakenData, cause: Received
                   ) -> Event:
    """The choreography's step: the stock is taken; take quantity x unit price of the
    user's credit."""
    return _take(conn, stock.order_id, stock.purchase, stock.user_id,
                 stock.quantity * round(stock.unit_price * 100), stock.unit_price, cause, None)


def take_as_told(conn: sqlite3.Connection, command: TakeCreditData, cause: Received
                 ) -> Event:
    """The orchestrator's TakeCredit: the amount it says (quantity x products' price)."""
    return _take(conn, command.order_id, command.purchase, command.user_id,
                 round(command.amount * 100), command.unit_price, cause, cause.id)


def give_back_as_told(conn: sqlite3.Connection, command: GiveBackData, cause: Received
                      ) -> Event:
    """The orchestrator's GiveCreditBack: what was taken for the purchase, if anything
    (nothing was: recorded, so that a TakeCredit arriving later takes nothing)."""
    took = conn.execute(f"SELECT holder_id, amount FROM {CREDIT.name}_takes WHERE "
                        "purchase = ? AND given_back_at IS NULL", (command.purchase,)
                        ).fetchone()
    ledger.give_back(conn, CREDIT, [command.purchase])
    user_id, amount = (took[0] or 0, took[1]) if took is not None else (0, 0)
    return outcome(events.CREDIT_GIVEN_BACK, CreditGivenBackData(
        command.order_id, command.purchase, user_id, amount / 100, command.reason, cause.id),
        cause)


SAGA_STEPS: dict[str, Step[Any]] = {
    # a reply to the orchestrator's TakeStock is orders' to act on, not users'
    events.STOCK_TAKEN: Step(StockTakenData, take_for_order, wanted=choreographed),
    events.TAKE_CREDIT: Step(TakeCreditData, take_as_told),
    events.GIVE_CREDIT_BACK: Step(GiveBackData, give_back_as_told),
}


def top_up(conn: sqlite3.Connection, given: CreditGiven) -> Given:
    """Add credit to each user, all or nothing (an unknown id refuses the lot)."""
    gives = [(u.id, credit_cents(u.amount, f"users[{i}]: ")) for i, u in enumerate(given.users)]
    with transaction(conn):
        missing = ledger.give(conn, CREDIT, gives, given.key)
        if missing:
            raise HttpError(422, f"user_id {missing[0]}: no such user; no credit was given")
    return Given(len({holder for holder, _ in gives}))


# --- HTTP ------------------------------------------------------------------------------------


def create_app(ctx: ServiceContext) -> ServiceApp:
    db = ctx.database(MIGRATIONS, ["users"])
    peers = ctx.peers()
    bus = ctx.bus(peers)
    outbox = Outbox("users", lambda: db.conn, bus, tracer=ctx.tracer, tasks=ctx.tasks)
    participant = Participant(ctx, db, bus, outbox, SAGA_STEPS)

    async def post_user(request: Request) -> Response:
        signup = checked(await read_body(request, SignUp))
        with db.span("INSERT", "users") as span:
            user = sign_up(db.conn, outbox, signup)
            span["attributes"]["msshop.keys"] = [user["id"]]
        return json_response(user, 201)

    async def post_batch(request: Request) -> Response:
        batch = await read_body(request, SignUpBatch)
        signups = [checked(s, f"users[{i}]: ") for i, s in enumerate(batch.users)]
        return json_response(sign_up_many(db.conn, outbox, signups))

    async def get_one(request: Request, user_id: int) -> Response:
        with db.span("SELECT", "users", [user_id]) as span:
            user = get_user(db.conn, user_id)
            span["attributes"]["msshop.rows"] = int(user is not None)
        if user is None:
            raise HttpError(404, f"no user with id {user_id}")
        return json_response(user)

    async def get_many(request: Request, ids: list[int]) -> Response:
        with db.span("SELECT", "users", ids) as span:
            found = get_users(db.conn, ids)
            span["attributes"]["msshop.rows"] = len(found["users"])
        return json_response(found)

    async def post_takes(request: Request) -> Response:
        takes = await read_body(request, CreditTakes)
        with db.span("UPDATE", "users", [t.user_id for t in takes.takes]) as span:
            outcomes = take_credit(db.conn, takes)
            span["attributes"]["msshop.rows"] = len(takes.takes) - len(outcomes.refused)
        return json_response(outcomes)

    async def post_give_back(request: Request) -> Response:
        back = await read_body(request, GiveBack)
        with db.span("UPDATE", "users") as span, transaction(db.conn):
            given_back = ledger.give_back(db.conn, CREDIT, back.purchases)
            span["attributes"]["msshop.rows"] = given_back
        return json_response(GivenBack(given_back))

    async def post_credit(request: Request) -> Response:
        given = await read_body(request, CreditGiven)
        with db.span("UPDATE", "users", [u.id for u in given.users]):
            return json_response(top_up(db.conn, given))

    def health() -> dict[str, Any]:
        return {**db.health(), "outbox": outbox.health(), "saga": participant.health()}

    return service_app(
        ctx.name,
        [
            Endpoint("POST", "/users", post_user, "Sign a user up", {
                201: (User, "The new user"), 409: "That email is already signed up"},
                body=SignUp),
            Endpoint("GET", "/users", get_many, "Users by id", {
                200: (UsersFound, "The users found, in the order asked, and the ids not "
                                  "found")},
                params=[id_list("user", missing="list users by id: GET /users?ids=1,2,3")]),
            Endpoint("POST", "/users/batch", post_batch, "Sign many users up", {
                200: (Created, "Every user's id, in input order, and how many were new")},
                body=SignUpBatch),
            Endpoint("GET", "/users/{user_id}", get_one, "One user", {
                200: (User, "The user"), 404: "No user with that id"},
                params=[path_id("user_id", "user")]),
            Endpoint("POST", "/users/takes", post_takes,
                     "Take credit for purchases (orders asks: direct-call)", {
                         200: (TakeOutcomes, "The takes refused, with the reason; every "
                                             "other was taken")},
                     body=CreditTakes, auth="services",
                     action="taking credit for a purchase"),
            Endpoint("POST", "/users/takes/give-back", post_give_back,
                     "Give back the credit of purchases refused elsewhere", {
                         200: (GivenBack, "How many takes went back")},
                     body=GiveBack, auth="services",
                     action="giving credit back"),
            Endpoint("POST", "/users/credit", post_credit, "Top users' credit up", {
                200: (Given, "How many users were given credit"),
                422: "No such user: no credit was given"},
                body=CreditGiven, auth="owner", action="topping credit up"),
            progress_endpoint(ctx.name, db, CREDIT),
        ],
        health,
        [db, peers, bus, outbox, participant],
        ctx.tracer,
        ctx.admin,
        __doc__ or "",
        senders=ctx.senders,  # orders' credential: its purchases take credit
    )
