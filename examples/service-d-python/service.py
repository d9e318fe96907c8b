"""Service D, "which products did user U order?", in plain Python: the standard library only.

A reference program for msshop's foreign-service contract (docs/protocol.md): msshop runs it
as the sandbox's query service, and it answers the lesson's question two ways:

    GET /user-orders/{user_id}?strategy=direct-call
        ask the owners now: users and orders at once, then products for the titles
    GET /user-orders/{user_id}?strategy=replicated[&after=POSITION&wait_ms=2000]
        read our own copy, built from the bus's events (after=: read-your-writes)
    GET /health
        who we are, and how far our copy has read the bus
    POST /chaos/trespass
        the sandbox's owner asks us to open another service's file, as a bug would

It never opens another service's file (unless told to, on purpose: POST /chaos/trespass):
what it knows of users, products and orders comes over HTTP (direct-call) or from their
events on the bus (replicated): msshop's log, or NATS JetStream read with no client
library. Its own file is $MSSHOP_DATA_DIR/query-replica.db.

Run it as msshop's query service:  msshop up --service query='python3 service.py'
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import os
import random
import re
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

log = logging.getLogger("service-d")

MAX_ID = 2**63 - 1  # SQLite's INTEGER: ids and positions are at most this
MAX_WAIT_MS = 30_000  # read-your-writes: the longest a caller may ask us to wait
MAX_IDS = 10_000  # ids in one ?ids= call to products (what it takes at most)
PAGE = 1000  # events asked of the bus at a time
LONG_POLL_MS = 10_000  # how long the bus may hold a read while nothing is new
HTTP_TIMEOUT = 2.0  # seconds a peer has to answer a direct-call
DB_FILE = "query-replica.db"  # the read model, in $MSSHOP_DATA_DIR


# --- Settings: everything comes from the environment and service.json -------------------

class Settings:
    """What msshop tells us (docs/protocol.md): the address to bind, our own directory,
    the other services' URLs, and the secret that lets us read the bus."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.service: str = document["service"]
        self.host: str = document["host"]
        self.port: int = int(document["port"])
        self.data_dir = Path(document["data_dir"])
        self.peers: dict[str, str] = document["peers"]
        self.credential: str = document["credential"]
        self.owner_digest: str = document["owner_digest"]
        # {"backend": "log", "url"} or {"backend": "nats", "servers", "stream", ...}
        self.bus: dict[str, Any] = document["bus"]
        self.bus_backend: str = self.bus.get("backend", "log")
        self.bus_url: str = self.bus.get("url") or self.peers.get("bus", "")
        if self.bus_backend not in ("log", "nats"):
            raise SystemExit(f"{self.service}: this example reads msshop's log bus or NATS "
                             f"JetStream, not {self.bus_backend!r}")


def load_settings() -> Settings:
    """service.json, found through $MSSHOP_SERVICE_FILE. Secrets live only in that file
    (mode 0600), never in the environment or on a command line."""
    path = os.environ.get("MSSHOP_SERVICE_FILE")
    if not path:
        raise SystemExit("MSSHOP_SERVICE_FILE is not set: run this program as a service of "
                         "msshop (msshop up --service query='python3 service.py')")
    try:
        return Settings(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise SystemExit(f"cannot read the service file {path}: {exc}") from None


# --- Errors: every failure is one JSON line, as msshop's services answer -----------------

class HttpError(Exception):
    """An answer other than 200: {"error", "status", "service"} plus any `extra` keys
    (e.g. "dependency": which service failed)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


# --- Tracing: forward W3C traceparent so msshop's traces show who touched which data -------
#
# Each request gets a server span; each call we make gets a client span, whose id goes to
# the callee in `traceparent`, so the callee's spans hang under it. msshop draws a trace by
# asking every service for its spans of that trace (GET /spans): ours are kept here, in
# msshop's span format. Without them the callees' spans would still carry the trace id, but
# hang under a parent nobody can show.

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
KEPT_SPANS = 10_000  # the last spans made, for GET /spans; older ones are let go


def new_id(bits: int) -> str:
    return f"{random.getrandbits(bits):0{bits // 4}x}"


def parse_traceparent(header: str | None) -> tuple[str, str | None]:
    """(trace id, the caller's span id) from the caller's header; a new trace if it sent
    none, or one we cannot read."""
    found = TRACEPARENT.match((header or "").strip().lower())
    if found and found.group(1) != "0" * 32 and found.group(2) != "0" * 16:
        return found.group(1), found.group(2)
    return new_id(128), None


class Tracer:
    """The spans this program made, the last KEPT_SPANS of them."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.kept: deque[dict[str, Any]] = deque(maxlen=KEPT_SPANS)

    @contextmanager
    def span(self, trace_id: str, parent_id: str | None, name: str, kind: str,
             **attributes: Any) -> Iterator[dict[str, Any]]:
        """A span around the block: timed, marked "error" if the block raises."""
        span = {"trace_id": trace_id, "span_id": new_id(64), "parent_id": parent_id,
                "service": self.service, "name": name, "kind": kind, "start": time.time(),
                "duration_ms": 0.0, "status": "ok", "attributes": attributes}
        began = time.perf_counter()
        try:
            yield span
        except BaseException:
            span["status"] = "error"
            raise
        finally:
            span["duration_ms"] = (time.perf_counter() - began) * 1000
            self.kept.append(span)  # deque.append is thread-safe

    def of(self, trace_id: str) -> list[dict[str, Any]]:
        return [span for span in list(self.kept) if span["trace_id"] == trace_id]


@dataclass(frozen=True)
class Traced:
    """Where a request's work is recorded: its trace, and the span our calls go under."""

    tracer: Tracer
    trace_id: str
    span_id: str

    def span(self, name: str, kind: str, **attributes: Any
             ) -> AbstractContextManager[dict[str, Any]]:
        return self.tracer.span(self.trace_id, self.span_id, name, kind, **attributes)


# --- Calling the other services over HTTP -----------------------------------------------

def call(url: str, path: str, headers: dict[str, str], timeout: float) -> tuple[int, Any]:
    """GET url+path; (status, decoded JSON). Raises OSError if nobody answers."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                      timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(body) if body else None
    except ValueError:
        return response.status, {"error": body[:200].decode(errors="replace")}


def ask(settings: Settings, traced: Traced, service: str, path: str) -> tuple[int, Any]:
    """Call a peer by name, as a client span whose id the callee gets in `traceparent`.
    Down, slow or failing (5xx) is a 503 naming it: the caller sees which dependency to
    start again. A 4xx comes back for the caller to judge."""
    with traced.span(f"GET {service}", "client", **{
            "peer.service": service, "http.request.method": "GET",
            "url.path": path.partition("?")[0]}) as span:
        status, data = call_traced(settings, service, path, span)
        span["attributes"]["http.response.status_code"] = status
        return status, data


def call_traced(settings: Settings, service: str, path: str, span: dict[str, Any]
                ) -> tuple[int, Any]:
    url = settings.peers[service]
    header = f"00-{span['trace_id']}-{span['span_id']}-01"
    try:
        status, data = call(url, path, {"traceparent": header}, HTTP_TIMEOUT)
    except TimeoutError:
        span["attributes"]["msshop.failure"] = "timeout"
        raise HttpError(503, f"{service} did not answer within {HTTP_TIMEOUT:g} s",
                        dependency=service, failure="timeout") from None
    except OSError as exc:
        span["attributes"]["msshop.failure"] = "refused"
        raise HttpError(503, f"{service} is down: {exc} at {url}; start it with: msshop "
                             f"start {service}", dependency=service, failure="refused") from None
    if status >= 500:
        span["attributes"]["msshop.failure"] = "5xx"
        detail = data.get("error") if isinstance(data, dict) else data
        raise HttpError(503, f"{service} failed with HTTP {status}: {detail}",
                        dependency=service, failure="5xx")
    return status, data


def ok(service: str, status: int, data: Any) -> Any:
    if status != 200:
        detail = data.get("error") if isinstance(data, dict) else data
        raise HttpError(502, f"{service} answered HTTP {status}: {detail}",
                        dependency=service, failure="4xx")
    return data


def order_line(order_id: int, product_id: int, title: str | None, quantity: int,
               unit_price_cents: int, status: str, reason: str | None) -> dict[str, Any]:
    """One order as every strategy shows it: prices kept as cents, sent as decimals (the
    same arithmetic as msshop's, so answers compare equal to the last digit), and where it
    stands: pending, confirmed or rejected (with the reason)."""
    return {"order_id": order_id, "product_id": product_id, "title": title,
            "quantity": quantity, "unit_price": unit_price_cents / 100,
            "total": quantity * unit_price_cents / 100, "status": status, "reason": reason}


# --- Strategy 1: direct-call (API composition) --------------------------------------------

POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="peer-call")


def direct_call(settings: Settings, traced: Traced, user_id: int, fanout: str
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(user, orders) asked of their owners now. Two network stages whatever the number of
    orders: users and orders at the same time, then products for the titles."""
    user_call = POOL.submit(ask, settings, traced, "users", f"/users/{user_id}")
    orders_call = POOL.submit(ask, settings, traced, "orders", f"/orders?user_id={user_id}")
    (user_status, user), (orders_status, placed) = user_call.result(), orders_call.result()
    if user_status == 404:
        raise HttpError(404, f"no user with id {user_id}")
    user = ok("users", user_status, user)
    orders = ok("orders", orders_status, placed)["orders"]
    product_ids = list(dict.fromkeys(o["product_id"] for o in orders))
    titles = (product_titles(settings, traced, product_ids) if fanout == "batched"
              else product_titles_one_by_one(settings, traced, product_ids))
    lines = [order_line(o["id"], o["product_id"], titles.get(o["product_id"]), o["quantity"],
                        round(o["unit_price"] * 100), o.get("status", "confirmed"),
                        o.get("reason")) for o in orders]
    return {"id": user_id, "name": user["name"], "email": user["email"]}, lines


def product_titles(settings: Settings, traced: Traced, ids: list[int]) -> dict[int, str]:
    """One products call for all of them (in chunks of what products takes at most)."""
    titles: dict[int, str] = {}
    for start in range(0, len(ids), MAX_IDS):
        chunk = ",".join(map(str, ids[start:start + MAX_IDS]))
        found = ok("products", *ask(settings, traced, "products", f"/products?ids={chunk}"))
        titles.update((p["id"], p["title"]) for p in found["products"])
    return titles


def product_titles_one_by_one(settings: Settings, traced: Traced, ids: list[int]
                              ) -> dict[int, str]:
    """fanout=naive: one call per product, one after the other: the N+1 pattern, slow on
    purpose so `msshop compare` can show what it costs."""
    titles: dict[int, str] = {}
    for product_id in ids:
        status, found = ask(settings, traced, "products", f"/products/{product_id}")
        if status != 404:
            titles[product_id] = ok("products", status, found)["title"]
    return titles


# --- Strategy 2: replicated (our own read model, built from the bus) ------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
    version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    id INTEGER PRIMARY KEY, title TEXT NOT NULL, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL, unit_price_cents INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'confirmed', reason TEXT, version INTEGER NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, id);
-- how far we have read the bus, and in which log: written in the same transaction as
-- the rows, so after a crash we resume exactly where the last commit left off
CREATE TABLE IF NOT EXISTS bus_position (
    id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL, log TEXT NOT NULL);
-- events we could not apply, kept with the reason instead of stopping the consumer
CREATE TABLE IF NOT EXISTS dead_letters (
    position INTEGER PRIMARY KEY, event_id TEXT, type TEXT, reason TEXT NOT NULL,
    body TEXT NOT NULL, dead_at REAL NOT NULL);
"""

# An order's status (a purchase by saga is pending until its outcome): the columns SCHEMA
# makes, added to a file made before there were statuses (every order there was confirmed).
ORDER_STATUS_COLUMNS = {
    "status": "ALTER TABLE orders ADD COLUMN status TEXT NOT NULL DEFAULT 'confirmed'",
    "reason": "ALTER TABLE orders ADD COLUMN reason TEXT",
    "version": "ALTER TABLE orders ADD COLUMN version INTEGER NOT NULL DEFAULT 1"}

# Each event type comes from one service only; anything else is refused (dead-lettered).
OWNERS = {"UserSignedUp": "users", "ProductCreated": "products",
          "ProductUpdated": "products", "OrderPlaced": "orders",
          "OrderConfirmed": "orders", "OrderRejected": "orders",
          # a saga's steps and commands: the order's outcome says all we show, so we skip
          # them
          "StockTaken": "products", "StockRefused": "products", "CreditTaken": "users",
          "CreditRefused": "users", "StockGivenBack": "products", "TakeStock": "orders",
          "TakeCredit": "orders", "GiveCreditBack": "orders", "GiveStockBack": "orders",
          "CreditGivenBack": "users"}
STEPS = {"StockTaken", "StockRefused", "CreditTaken", "CreditRefused", "StockGivenBack",
         "TakeStock", "TakeCredit", "GiveCreditBack", "GiveStockBack", "CreditGivenBack"}
# what each order event may say of its order's status (an OrderPlaced that does not:
# confirmed)
STATUSES = {"OrderPlaced": ("pending", "confirmed"), "OrderConfirmed": ("confirmed",),
            "OrderRejected": ("rejected",)}


def open_db(path: Path) -> sqlite3.Connection:
    """Autocommit mode (isolation_level=None): we say BEGIN and COMMIT ourselves.
    WAL lets the request threads read while the consumer writes."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


class Poison(Exception):
    """An event that can never be applied: it goes to dead_letters with this reason."""


def an_id(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if type(value) is not int or not 0 <= value <= MAX_ID:
        raise Poison(f"data.{key} is not an id: {value!r}")
    return value


def text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise Poison(f"data.{key} is not a string: {value!r}")
    return value


def cents(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 <= value <= 1_000_000):
        raise Poison(f"data.{key} is not a price: {value!r}")
    return round(value * 100)


def apply_event(conn: sqlite3.Connection, event: dict[str, Any]) -> None:
    """Apply one event to the read model. Safe to repeat and to receive out of order:
    users, products and orders keep their aggregate version and only a newer one wins (a
    saga's OrderConfirmed or OrderRejected, version 2, may come before its OrderPlaced)."""
    kind, source = event.get("type"), event.get("source")
    if kind not in OWNERS:
        raise Poison(f"unknown event type {kind!r}")
    if source != OWNERS[kind]:
        raise Poison(f"a {kind} comes only from {OWNERS[kind]}, but {source} sent it")
    if kind in STEPS:
        return
    data, version = event.get("data"), event.get("aggregate_version")
    if not isinstance(data, dict) or type(version) is not int or not 0 <= version <= MAX_ID:
        raise Poison("the event has no data object or no aggregate_version")
    if an_id(data, "id") != event.get("aggregate_id"):
        raise Poison(f"data.id {data['id']} is not the aggregate_id {event.get('aggregate_id')}")
    if kind == "UserSignedUp":
        conn.execute("INSERT INTO users VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                     "name = excluded.name, email = excluded.email, version = excluded.version "
                     "WHERE excluded.version > users.version",
                     (data["id"], text(data, "name"), text(data, "email"), version))
    elif kind in ("ProductCreated", "ProductUpdated"):
        # every product event carries the whole product, so an update that arrives before
        # its creation is fine: the late creation has a lower version and loses
        conn.execute("INSERT INTO products VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                     "title = excluded.title, version = excluded.version "
                     "WHERE excluded.version > products.version",
                     (data["id"], text(data, "title"), version))
    else:
        status, reason = data.get("status", "confirmed"), data.get("reason")
        if status not in STATUSES[kind] or not isinstance(reason, (str, type(None))):
            raise Poison(f"{kind} says its order is {status!r} (reason {reason!r})")
        conn.execute("INSERT INTO orders (id, user_id, product_id, quantity, "
                     "unit_price_cents, status, reason, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                     "ON CONFLICT (id) DO UPDATE SET quantity = excluded.quantity, "
                     "unit_price_cents = excluded.unit_price_cents, status = excluded.status, "
                     "reason = excluded.reason, version = excluded.version "
                     "WHERE excluded.version > orders.version",
                     (data["id"], an_id(data, "user_id"), an_id(data, "product_id"),
                      an_id(data, "quantity"), cents(data, "unit_price"), status, reason,
                      version))


class BusRefused(Exception):
    """The bus answered, but not with a page (e.g. 403: the credential is wrong)."""


class LogReader:
    """msshop's own log bus: one HTTP long-poll per read (docs/protocol.md)."""

    def __init__(self, settings: Settings) -> None:
        self.url, self.credential = settings.bus_url, settings.credential

    def read(self, after: int, wait_ms: int) -> dict[str, Any]:
        path = f"/events?after={after}&limit={PAGE}&wait_ms={wait_ms}"
        status, page = call(self.url, path, {"authorization": f"Bearer {self.credential}"},
                            timeout=wait_ms / 1000 + 5)
        if status != 200:
            detail = page.get("error") if isinstance(page, dict) else page
            raise BusRefused(f"the bus answered HTTP {status}: {detail}")
        return page  # type: ignore[no-any-return]


class Consumer:
    """Follows the bus from our stored position and applies what it reads, in a thread of
    its own. The request threads read its progress (freshness) and wait on it (after=)."""

    def __init__(self, settings: Settings, db_path: Path) -> None:
        self.settings = settings
        self.bus: LogReader | NatsReader = (
            NatsReader(settings.bus) if settings.bus_backend == "nats" else LogReader(settings))
        self.conn = open_db(db_path)
        self.conn.executescript(SCHEMA)
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(orders)")}
        for column, statement in ORDER_STATUS_COLUMNS.items():
            if column not in columns:
                self.conn.execute(statement)
        row = self.conn.execute("SELECT position, log FROM bus_position").fetchone()
        self.position: int = row[0] if row else 0  # the last event applied
        self.log: str = row[1] if row else ""  # the identity of the log it belongs to
        (self.dead,) = self.conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        self.applied = 0
        self.head = self.position
        self.catching_up_to: int | None = None
        self.listening = False
        self.bus_error: str | None = None
        self.log_problem: str | None = None
        self.head_seen_at: float | None = None
        self.last_applied_at: float | None = None
        self.started = False  # the first page is read: we know where the bus's head was
        self.failing: str | None = None  # why the consumer fails now (not the bus's fault)
        self.advanced = threading.Condition()  # notified after each commit
        self.stopping = threading.Event()

    def run(self) -> None:
        """The consumer thread: never ends until we stop. A failure that is not the bus's
        (a full disk, a bug) is logged, shown in /health, and tried again: what failed was
        rolled back, so it is read again from the stored position."""
        while not self.stopping.is_set():
            try:
                self.follow()
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
                if self.failing != why:
                    log.exception("the consumer failed; trying again in 1 s")
                self.failing, self.listening = why, False
                self.stopping.wait(1.0)

    def follow(self) -> None:
        wait_ms = 0  # the first read answers at once: it tells us the bus's head
        while not self.stopping.is_set():
            try:
                self.listening = wait_ms > 0
                page = self.read_bus(wait_ms)
            except BusRefused as exc:
                self.note_bus_down(str(exc))
                wait_ms = 0
                continue
            except (OSError, ValueError, http.client.HTTPException) as exc:
                self.note_bus_down(f"the bus is unreachable: {str(exc) or type(exc).__name__}")
                wait_ms = 0
                continue
            if self.bus_error is not None:
                log.info("the bus is back; reading from position %d", self.position)
            self.bus_error, wait_ms = None, LONG_POLL_MS
            self.head_seen_at = time.time()
            if not self.same_log(page):
                self.stopping.wait(2.0)  # nothing to apply until someone fixes the log
                continue
            self.head = max(page["head"], self.position)
            if self.catching_up_to is None and not self.started and page["head"] > self.position:
                self.catching_up_to = page["head"]
                log.info("catching up from position %d to %d", self.position, page["head"])
            self.started = True
            if page["events"]:
                self.apply_page(page["events"])
            self.failing = None  # read and applied: whatever failed works again

    def read_bus(self, wait_ms: int) -> dict[str, Any]:
        """The events after our position (or none, after wait_ms), whichever the bus:
        {"head", "log", "events": [{"position", "event"[, "sender"]}, ...]}."""
        return self.bus.read(self.position, wait_ms)

    def note_bus_down(self, why: str) -> None:
        self.listening = False
        if self.bus_error is None:
            log.warning("cannot read the bus (%s); answers come from position %d",
                        why, self.position)
        self.bus_error = why
        self.stopping.wait(0.5)  # try again soon, but do not spin

    def same_log(self, page: dict[str, Any]) -> bool:
        """A position means something only in the log it was read from: if the bus's log
        was replaced or emptied, say so and apply nothing (the fix: rebuild from 0)."""
        problem = None
        if self.log and page["log"] != self.log:
            problem = (f"the bus's log was replaced (it is log {page['log'][:8]}; this read "
                       f"model was built from log {self.log[:8]}); stop this service, "
                       f"delete {self.settings.data_dir / DB_FILE} and start it again to "
                       "rebuild it from the new log")
        elif page["head"] < self.position:
            problem = (f"the bus's log ends at position {page['head']}, but this read model "
                       f"has applied up to {self.position}: the log was emptied or replaced")
        if problem and problem != self.log_problem:
            log.error("%s", problem)
        self.log_problem = problem
        if problem is None:
            self.log = page["log"]
        return problem is None

    def apply_page(self, delivered: list[dict[str, Any]]) -> None:
        """Apply a page of events and store the new position in ONE transaction: a crash
        leaves both or neither, so each event is applied exactly once."""
        position, applied, dead = self.position, 0, 0
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for item in delivered:
                position = item["position"]
                if self.apply_one(item):
                    applied += 1
                else:
                    dead += 1
            self.conn.execute("INSERT INTO bus_position VALUES (1, ?, ?) ON CONFLICT (id) "
                              "DO UPDATE SET position = excluded.position, log = excluded.log",
                              (position, self.log))
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:  # a failed COMMIT may have rolled back already
                self.conn.execute("ROLLBACK")  # e.g. a full disk: nothing applied, read again
            raise
        self.advanced_to(position, applied, dead)

    def apply_one(self, item: dict[str, Any]) -> bool:
        """Apply one event under a savepoint; False if it was dead-lettered instead.
        The savepoint undoes a half-applied event, so the rest of the page still goes in."""
        event = item["event"]
        self.conn.execute("SAVEPOINT event")
        try:
            if not isinstance(event, dict):
                raise Poison("not an event object")
            sender = item.get("sender")  # NATS: who published it (its subject says)
            if sender and event.get("source") != sender:
                raise Poison(f"its source is {event.get('source')!r}, but {sender} sent it")
            apply_event(self.conn, event)
        except (Poison, sqlite3.IntegrityError, KeyError, TypeError, ValueError,
                OverflowError) as exc:  # the event's fault; a full disk is not: see apply_page
            self.conn.execute("ROLLBACK TO event")
            self.dead_letter(item["position"], event, str(exc))
            self.conn.execute("RELEASE event")
            return False
        self.conn.execute("RELEASE event")
        return True

    def dead_letter(self, position: int, event: Any, reason: str) -> None:
        log.warning("dead-lettered position %d: %s", position, reason)
        known = event if isinstance(event, dict) else {}
        event_id, kind = known.get("id"), known.get("type")
        self.conn.execute("INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?)",
                          (position, event_id if isinstance(event_id, str) else None,
                           kind if isinstance(kind, str) else None, reason,
                           json.dumps(event), time.time()))

    def advanced_to(self, position: int, applied: int, dead: int) -> None:
        with self.advanced:
            self.position, self.last_applied_at = position, time.time()
            self.head = max(self.head, position)
            self.applied += applied
            self.dead += dead
            if self.catching_up_to is not None and position >= self.catching_up_to:
                log.info("caught up at position %d", position)
                self.catching_up_to = None
            self.advanced.notify_all()  # wakes read-your-writes requests

    def wait_for(self, position: int, wait_ms: int) -> bool:
        """Read-your-writes: block until `position` is applied; False after wait_ms."""
        with self.advanced:
            return bool(self.advanced.wait_for(lambda: self.position >= position,
                                               wait_ms / 1000))

    def freshness(self) -> dict[str, Any]:
        """How current the read model is, in the shape msshop's query service answers."""
        now = time.time()

        def ago(at: float | None) -> float | None:
            return None if at is None else round((now - at) * 1000, 1)

        # the bus answers every long-poll within LONG_POLL_MS, even with nothing new: one
        # open much longer (a frozen bus) is not "listening", whatever the socket says
        error, listening = self.bus_error, self.listening
        if listening and self.head_seen_at and now - self.head_seen_at > LONG_POLL_MS / 1000 + 2:
            error = error or f"the bus has not answered for {now - self.head_seen_at:.0f} s"
            listening = False
        return {"position": self.position, "bus_head": self.head,
                "behind": self.head - self.position,
                "caught_up": (self.head == self.position and error is None
                              and self.log_problem is None and self.failing is None),
                "catching_up_to": self.catching_up_to, "listening": listening,
                "head_seen_ms_ago": ago(self.head_seen_at),
                "last_applied_ms_ago": ago(self.last_applied_at),
                "bus_error": error, "log_problem": self.log_problem}


class ReadModel:
    """The request threads' side of the file: one read-only connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.local = threading.local()

    def conn(self) -> sqlite3.Connection:
        if not hasattr(self.local, "conn"):
            self.local.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                              isolation_level=None)
        return self.local.conn  # type: ignore[no-any-return]

    def user_orders(self, user_id: int) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The user and their orders, each with its product's title (None: that product's
        event has not reached us yet). One read transaction, so both parts agree."""
        conn = self.conn()
        conn.execute("BEGIN")
        try:
            user = conn.execute("SELECT id, name, email FROM users WHERE id = ?",
                                (user_id,)).fetchone()
            rows = conn.execute(
                "SELECT o.id, o.product_id, p.title, o.quantity, o.unit_price_cents, "
                "o.status, o.reason FROM orders AS o "
                "LEFT JOIN products AS p ON p.id = o.product_id "
                "WHERE o.user_id = ? ORDER BY o.id", (user_id,)).fetchall()
        finally:
            conn.execute("COMMIT")
        if user is None:
            return None, []
        return {"id": user[0], "name": user[1], "email": user[2]}, [order_line(*r) for r in rows]

    def rows(self) -> dict[str, int]:
        conn = self.conn()
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("users", "products", "orders")}


# --- Reading the bus on NATS JetStream, with no client library ----------------------------
#
# With `msshop up --bus nats` the bus is a JetStream stream (service.json's bus.stream)
# holding every event of the sandbox, one message each: an event's position is its stream
# sequence. We speak the NATS text protocol over a plain socket: the server says INFO, we
# say CONNECT (user and password) and PING, it says PONG; we SUB to our inbox, and PUB
# requests to the JetStream API with a reply subject in that inbox, whose answers come
# back as MSG (or HMSG: with headers). Lines end in \r\n; a message's payload follows its
# line, its length given there.
#
# The reader is a pull consumer of our own, made to start at our stored position + 1
# (ephemeral, in memory, no acks: the server forgets it when we stop asking; our position
# lives in our file, with the rows). Each read asks for the next page (MSG.NEXT: batch,
# expires) and takes what comes: each message's reply subject, $JS.ACK.<stream>.<consumer>.
# <delivered>.<stream seq>.<consumer seq>.<time>.<pending>, tells its position and how many
# are left after it. A dropped connection or a server gone: the next read connects to the
# next server of the list (a cluster's other nodes) and starts a new consumer from our
# position.

class NoStream(BusRefused):
    """JetStream has no stream by that name (its error code 10059)."""


NATS_TIMEOUT = 5.0  # seconds a NATS server has to answer a request
# while a fetch waits, the server sends a heartbeat (a status 100) each second; three
# seconds of silence mean our consumer is gone (its node died while we were connected to
# another), so we make a new one rather than wait for a fetch that will never end
HEARTBEAT = 1.0


class NatsReader:
    """Reads the sandbox's stream; `read` returns a page in the log bus's shape."""

    def __init__(self, bus: dict[str, Any]) -> None:
        self.servers = [urlsplit(url) for url in bus["servers"]]
        self.stream, self.user, self.password = bus["stream"], bus["user"], bus["password"]
        self.prefix = bus["subjects"].removesuffix(">")  # msshop.<id>.: the sender follows
        self.inbox = f"_INBOX.{self.user}.{new_id(64)}"  # the replies we may read
        self.server = 0  # the next server to try: the one after the last that failed
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.sent = 0  # requests made: each gets a reply subject of its own
        self.consumer: str | None = None  # our consumer's name on the server
        self.next = 0  # the stream sequence our consumer delivers next
        self.pull: str | None = None  # the reply subject of the fetch still open
        self.pull_left = 0  # events the open fetch may still bring
        self.head, self.log = 0, ""

    def read(self, after: int, wait_ms: int) -> dict[str, Any]:
        try:
            if self.sock is None:
                self.connect()
            if wait_ms == 0 or self.consumer is None or self.next != after + 1:
                if not self.describe():  # no stream: an empty log, for now
                    time.sleep(min(wait_ms, 1000) / 1000)  # nothing to wait on: look again
                    return {"head": 0, "log": "", "events": []}
                if wait_ms == 0:  # asked for the head only (the first read)
                    return {"head": self.head, "log": self.log, "events": []}
                self.start_consumer(after + 1)
            events = self.fetch(wait_ms)
            if not events:  # nothing new: is the stream still the one we read, how long?
                self.describe()
            return {"head": self.head, "log": self.log, "events": events}
        except BaseException:
            self.close()  # whatever broke, start over (on the next server)
            raise

    def connect(self) -> None:
        url = self.servers[self.server % len(self.servers)]
        self.server += 1  # if this one fails, the next read tries the next
        where = f"{url.hostname}:{url.port}"
        self.sock = socket.create_connection((url.hostname, url.port or 4222), NATS_TIMEOUT)
        self.buffer = b""
        info = self.line(time.monotonic() + NATS_TIMEOUT)
        if info is None or not info.startswith(b"INFO "):
            raise ConnectionError(f"{where} is not a NATS server")
        if json.loads(info[5:]).get("tls_required"):
            raise BusRefused(f"NATS at {where} requires TLS, which this example does not speak")
        hello = {"user": self.user, "pass": self.password, "verbose": False,
                 "pedantic": False, "headers": True, "no_responders": True,
                 "name": "service-d (python)", "lang": "python-stdlib", "version": "1",
                 "protocol": 1}
        self.send(f"CONNECT {json.dumps(hello)}\r\nPING\r\nSUB {self.inbox}.> 1\r\n")
        while (line := self.line(time.monotonic() + NATS_TIMEOUT)) != b"PONG":
            if line is None:
                raise TimeoutError(f"NATS at {where} did not answer CONNECT")
            self.check(line)
        log.info("reading stream %s on NATS at %s", self.stream, where)

    def describe(self) -> bool:
        """The stream's head (its last sequence) and identity (name and creation time: a
        stream deleted and made again is another log). False if there is no stream: the
        writers make it with the first event, so until then the log is empty (and after a
        deletion, it is: our position is then beyond its head)."""
        try:
            info = self.request(f"$JS.API.STREAM.INFO.{self.stream}", {})
        except NoStream:
            self.head, self.log = 0, ""
            return False
        self.head = int(info["state"]["last_seq"])
        self.log = f"{info['config']['name']}@{info['created']}"
        return True

    def start_consumer(self, start: int) -> None:
        config = {"deliver_policy": "by_start_sequence", "opt_start_seq": start,
                  "ack_policy": "none", "mem_storage": True,
                  "inactive_threshold": 60 * 10**9,  # ns: gone a minute after we stop
                  "description": "service-d (python)"}
        made = self.request(f"$JS.API.CONSUMER.CREATE.{self.stream}",
                            {"stream_name": self.stream, "config": config})
        self.consumer, self.next, self.pull = made["name"], start, None

    def fetch(self, wait_ms: int) -> list[dict[str, Any]]:
        """The next events: at once if the stream has them, else as soon as one comes, or
        none after wait_ms. One fetch open at a time; a page ends where the stream did
        (pending 0), at PAGE events, or with the fetch."""
        if self.pull is None:
            self.sent += 1
            self.pull = f"{self.inbox}.fetch.{self.sent}"
            self.pull_left = PAGE
            self.publish(f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer}", self.pull,
                         {"batch": PAGE, "expires": wait_ms * 1_000_000,
                          "idle_heartbeat": int(HEARTBEAT * 1e9)})
        events: list[dict[str, Any]] = []
        while self.pull is not None and len(events) < PAGE:
            got = self.message(time.monotonic() + 3 * HEARTBEAT)
            if got is None:
                raise TimeoutError("NATS went quiet in a fetch (no heartbeat): our consumer "
                                   "is gone")
            subject, reply, headers, payload = got
            if subject == self.pull and not reply:  # a status: the fetch ended, or a problem
                self.fetch_ended(headers)
                continue
            ack = reply.split(".")
            if len(ack) < 9 or ack[1] != "ACK":
                continue
            # $JS.ACK.<stream>.<consumer>.<n>.<seq>.<n>.<time>.<pending>, or with
            # <domain>.<account> after ACK (and a token more at the end)
            at = 2 if len(ack) == 9 else 4
            if ack[at + 1] != self.consumer:
                continue  # an old consumer's: not ours now
            position, pending = int(ack[at + 3]), int(ack[at + 6])
            self.pull_left -= 1
            if self.pull_left == 0:
                self.pull = None  # the whole batch came: the fetch is done
            # one handed again or out of order (the bus's door may, as the log bus may) is
            # applied as any other: the read model keeps each row's version
            self.next = max(self.next, position + 1)
            self.head = max(self.head, position + pending)
            sender = subject.removeprefix(self.prefix).partition(".")[0]
            try:
                event = json.loads(payload)
            except ValueError:  # not JSON: dead-lettered as "not an event object"
                event = payload.decode(errors="replace")
            events.append({"position": position, "event": event, "sender": sender})
            if pending == 0:
                break  # all the stream holds: answer now, the fetch stays open for more
        return events

    def fetch_ended(self, headers: bytes) -> None:
        """A status in place of a message: 408 (expired), 409 (e.g. the consumer was
        deleted, or the server is busy) end the fetch; 100 (a heartbeat) does not."""
        status_line = headers.split(b"\r\n")[0].decode(errors="replace")  # NATS/1.0 408 ...
        code = status_line[9:12]
        if code == "100":
            return
        self.pull = None
        if code == "408":
            return
        self.consumer = None  # whatever it is, the next read makes a new consumer
        if code != "409":
            raise BusRefused(f"NATS refused the fetch: {status_line[9:]}")

    def request(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        """A JetStream API call: its JSON answer; BusRefused with the server's words if it
        answered an error. Made only while no fetch is open (their messages would be lost)."""
        self.sent += 1
        reply = f"{self.inbox}.api.{self.sent}"
        self.publish(subject, reply, body)
        deadline = time.monotonic() + NATS_TIMEOUT
        while (got := self.message(deadline)) is not None:
            if got[0] != reply:
                continue  # something of an earlier fetch, too late
            if got[2].startswith(b"NATS/1.0 503"):
                raise BusRefused(f"no JetStream answered {subject} (its nodes may be "
                                 "choosing a leader)")
            answer: dict[str, Any] = json.loads(got[3])
            if "error" in answer:
                refused = NoStream if answer["error"].get("err_code") == 10059 else BusRefused
                raise refused(f"NATS refused {subject}: {answer['error'].get('description')}")
            return answer
        raise TimeoutError(f"NATS did not answer {subject} within {NATS_TIMEOUT:g} s")

    # the protocol itself: lines and messages on the socket

    def publish(self, subject: str, reply: str, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send(f"PUB {subject} {reply} {len(payload)}\r\n".encode() + payload + b"\r\n")

    def send(self, data: str | bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def message(self, deadline: float) -> tuple[str, str, bytes, bytes] | None:
        """The next MSG or HMSG as (subject, reply, headers, payload), answering the
        server's PINGs on the way; None at the deadline."""
        while (line := self.line(deadline)) is not None:
            if not (line.startswith(b"MSG ") or line.startswith(b"HMSG ")):
                self.check(line)
                continue
            words = line.decode().split()  # [H]MSG subject sid [reply] [header bytes] bytes
            with_headers = words[0] == "HMSG"
            sizes = [int(word) for word in words[-2 if with_headers else -1:]]
            reply = words[3] if len(words) == 4 + with_headers + 1 else ""
            data = self.exactly(sizes[-1] + 2)[:-2]
            split = sizes[0] if with_headers else 0
            return words[1], reply, data[:split], data[split:]
        return None

    def check(self, line: bytes) -> None:
        """A line that is not a message: PING (answered), PONG, +OK, INFO (a cluster's news:
        nothing to do), or -ERR (the server refused something: authorization, permissions)."""
        if line == b"PING":
            self.send(b"PONG\r\n")
        elif line.startswith(b"-ERR"):
            raise BusRefused(f"NATS refused: {line[5:].decode(errors='replace').strip(chr(39))}")

    def line(self, deadline: float) -> bytes | None:
        while b"\r\n" not in self.buffer:
            if not self.receive(deadline):
                return None
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:  # the rest of a message the server is sending now
            if not self.receive(time.monotonic() + NATS_TIMEOUT):
                raise TimeoutError("NATS stopped in the middle of a message")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def receive(self, deadline: float) -> bool:
        """More bytes into the buffer; False at the deadline."""
        assert self.sock is not None
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        if not data:
            raise ConnectionError("the NATS server closed the connection")
        self.buffer += data
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.consumer, self.pull = None, None, None


# --- Asked to trespass: POST /chaos/trespass (docs/protocol.md) --------------------------
#
# The lesson's rule is that no service opens another's database file. `msshop trespass
# query --into users` asks us to break it on purpose, as a bug would: open and read the
# file msshop names, and answer what happened. Where msshop has the kernel hold the rule
# (Landlock), the operating system refuses; where nothing refuses, msshop reports the rule
# broken. Either way one line goes to our log.

TRESPASS_WAYS = ("sqlite", "open")  # sqlite3.connect and a read, or the file opened


class Trespasser:
    """Tries what it is asked to, and remembers how often it was refused (for /health)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.tried, self.refused = 0, 0
        self.last: dict[str, Any] | None = None
        self.lock = threading.Lock()

    def attempt(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise HttpError(422, 'send {"into": "<service>", "path": "<its file>"}')
        into, path, how = body.get("into"), body.get("path"), body.get("how", "sqlite")
        if not (isinstance(into, str) and re.fullmatch(r"[a-z][a-z0-9-]{0,63}", into)):
            raise HttpError(422, f"into {into!r}: name the service whose file to try")
        if not (isinstance(path, str) and path.startswith("/") and "\0" not in path):
            raise HttpError(422, f"path {path!r}: give the absolute path of {into}'s file")
        if how not in TRESPASS_WAYS:
            raise HttpError(422, f"how {how!r} is not one of: {', '.join(TRESPASS_WAYS)}")
        error = None
        try:
            if how == "sqlite":
                conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
                try:
                    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                finally:
                    conn.close()
            else:
                with Path(path).open("rb") as file:
                    file.read(100)
        except (OSError, sqlite3.Error) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            log.warning("trespass, on purpose: tried to read %s's file %s (%s): refused: %s",
                        into, path, how, error)
        else:
            log.error("trespass, on purpose: read %s's file %s (%s) and nothing refused it: "
                      "the isolation rule did not hold", into, path, how)
        answer = {"service": self.service, "into": into, "tried": path, "how": how,
                  "refused": error is not None, "error": error}
        with self.lock:
            self.tried += 1
            self.refused += error is not None
            self.last = answer
        return answer

    def health(self) -> dict[str, Any]:
        with self.lock:
            return {"tried": self.tried, "refused": self.refused, "last": self.last}


# --- The HTTP side ------------------------------------------------------------------------

class Service:
    """What the request handlers need: settings, the consumer and the read model."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db_path = settings.data_dir / DB_FILE
        self.consumer = Consumer(settings, self.db_path)
        self.read_model = ReadModel(self.db_path)
        self.tracer = Tracer(settings.service)
        self.trespasser = Trespasser(settings.service)
        self.started_at = time.time()

    def health(self) -> dict[str, Any]:
        """Still 200 when the consumer fails ("degraded", and why): the process is up, and
        direct-call still works."""
        failing = self.consumer.failing
        return {"service": self.settings.service, "status": "degraded" if failing else "ok",
                "pid": os.getpid(), "ready_at": self.started_at, "db": str(self.db_path),
                "rows": self.read_model.rows(),
                "problems": [f"the consumer fails: {failing}"] if failing else [],
                "consumer": {**self.consumer.freshness(), "applied": self.consumer.applied,
                             "dead_letters": self.consumer.dead},
                "trespass": self.trespasser.health()}

    def check_owner(self, authorization: str | None, what: str) -> None:
        """Only the sandbox's owner may read spans and dead letters (they hold its data).
        msshop sends its token; we hold only the token's digest, enough to check it."""
        secret = authorization[7:].strip() if authorization and authorization[:7].lower(
        ) == "bearer " else ""
        if not secret:
            raise HttpError(401, f"{what} needs the sandbox's token: send "
                                 "'authorization: Bearer <token from state.json>'")
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if not hmac.compare_digest(digest, self.settings.owner_digest):
            raise HttpError(403, f"{what} refused: that is not this sandbox's token")

    def spans(self, query: dict[str, str], authorization: str | None) -> dict[str, Any]:
        """GET /spans?trace_id=: our spans of one trace (msshop gathers them to draw it)."""
        self.check_owner(authorization, "reading spans")
        trace_id = query.get("trace_id", "")
        if not re.fullmatch(r"[0-9a-f]{32}", trace_id):
            raise HttpError(422, "ask for one trace: GET /spans?trace_id=<32 hex digits>")
        return {"service": self.settings.service, "spans": self.tracer.of(trace_id)}

    def dead_letters(self, query: dict[str, str], authorization: str | None
                     ) -> dict[str, Any]:
        """GET /dead-letters?limit=N: the events we could not apply, newest first."""
        self.check_owner(authorization, "reading dead letters")
        limit = number(query, "limit", 1, 10_000, 50)
        rows = self.read_model.conn().execute(
            "SELECT position, event_id, type, reason, dead_at, body FROM dead_letters "
            "ORDER BY position DESC LIMIT ?", (limit,)).fetchall()
        return {"count": self.consumer.dead, "dead_letters": [
            {"position": p, "event_id": i, "type": t, "reason": r, "dead_at": at,
             "body": body[:500]} for p, i, t, r, at, body in rows]}

    def user_orders(self, user_id: int, query: dict[str, str], traced: Traced
                    ) -> dict[str, Any]:
        strategy = choice(query, "strategy", ("replicated", "direct-call"))
        fanout = choice(query, "fanout", ("batched", "naive"))
        after = number(query, "after", 0, MAX_ID, 0)
        wait_ms = number(query, "wait_ms", 0, MAX_WAIT_MS, 2000)
        choice(query, "kept", ("1", "0", "true", "false"))  # accepted: we keep no answers
        if choice(query, "partial", ("0", "1", "false", "true")) in ("1", "true"):
            raise HttpError(422, "partial answers are not served by this example; ask "
                                 "without partial")
        if strategy == "direct-call":
            user, orders = direct_call(self.settings, traced, user_id, fanout)
            return {"question": "user-orders", "strategy": strategy, "fanout": fanout,
                    "user": user, "orders": orders, "freshness": {"live": True},
                    "trace_id": traced.trace_id}
        return self.replicated(user_id, after, wait_ms, traced)

    def replicated(self, user_id: int, after: int, wait_ms: int, traced: Traced
                   ) -> dict[str, Any]:
        consumer = self.consumer
        if after > consumer.position and not consumer.wait_for(after, wait_ms):
            raise HttpError(503, f"the read model has not applied bus position {after} within "
                                 f"{wait_ms} ms (it is at {consumer.position} of "
                                 f"{consumer.head}); try again, or ask with a longer wait_ms",
                            freshness=consumer.freshness())
        freshness = consumer.freshness()
        if consumer.catching_up_to is not None:
            raise HttpError(503, f"not ready: catching up (position {consumer.position} of "
                                 f"{consumer.catching_up_to}); ask again in a moment, or ask "
                                 "with strategy=direct-call", freshness=freshness)
        with traced.span("SELECT users, orders, products", "internal", **{
                "db.system": "sqlite", "db.name": self.db_path.name, "db.operation": "SELECT",
                "db.sql.table": "users, orders, products", "msshop.keys": [user_id]}) as span:
            user, orders = self.read_model.user_orders(user_id)
            span["attributes"]["msshop.rows"] = len(orders) + (user is not None)
        if user is None:
            raise HttpError(404, f"no user with id {user_id} (the read model has applied the "
                                 f"bus up to position {freshness['position']})",
                            freshness=freshness)
        return {"question": "user-orders", "strategy": "replicated", "user": user,
                "orders": orders, "freshness": freshness, "trace_id": traced.trace_id}


def choice(query: dict[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = query.get(name, allowed[0])
    if value not in allowed:
        raise HttpError(422, f"{name} {value!r} is not one of: {', '.join(allowed)}")
    return value


def number(query: dict[str, str], name: str, least: int, most: int, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not least <= int(raw) <= most:
        raise HttpError(422, f"query parameter {name}={raw!r} must be an integer from "
                             f"{least} to {most}")
    return int(raw)


def user_id_of(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_ID:
        raise HttpError(422, f"user_id {raw!r} is not an id: ids are positive integers")
    return int(raw)


class Handler(BaseHTTPRequestHandler):
    """One request: route it, answer JSON. HTTP/1.1, so callers keep their connection."""

    protocol_version = "HTTP/1.1"
    # the head and the body go out in two writes: without this, Nagle's algorithm holds the
    # body until the client's delayed ACK, 40 ms later, on every kept-alive request
    disable_nagle_algorithm = True
    service: Service  # set on the class by serve()

    def do_GET(self) -> None:  # the name http.server calls
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = url.path.split("/")
        try:
            if url.path == "/health":
                self.answer(200, self.service.health())
            elif url.path == "/spans":
                self.answer(200, self.service.spans(query, self.headers.get("authorization")))
            elif url.path == "/dead-letters":
                self.answer(200, self.service.dead_letters(
                    query, self.headers.get("authorization")))
            elif len(parts) == 3 and parts[1] == "user-orders":
                self.user_orders(parts[2], query)
            else:
                raise HttpError(404, f"{self.service.settings.service} has no route "
                                     f"GET {url.path}")
        except HttpError as exc:
            self.answer(exc.status, {"error": exc.message, "status": exc.status,
                                     "service": self.service.settings.service, **exc.extra})
        except Exception as exc:  # a bug: one line in the log, a JSON 500 to the caller
            log.exception("GET %s failed", self.path)
            self.answer(500, {"error": f"{type(exc).__name__}: {exc}; see the service's log",
                              "status": 500, "service": self.service.settings.service})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/chaos/trespass":
            self.not_allowed()
            return
        try:
            length = self.headers.get("content-length") or "0"
            if not (length.isascii() and length.isdigit() and int(length) <= 65536):
                self.close_connection = True  # the body is not read: the connection ends
                raise HttpError(413, "a trespass request is a small JSON object")
            raw = self.rfile.read(int(length))  # read first: the connection goes on after
            self.service.check_owner(self.headers.get("authorization"), "trespass")
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                raise HttpError(422, "the body is not JSON") from None
            self.answer(200, self.service.trespasser.attempt(body))
        except HttpError as exc:
            self.answer(exc.status, {"error": exc.message, "status": exc.status,
                                     "service": self.service.settings.service, **exc.extra})

    def do_PUT(self) -> None:
        self.not_allowed()

    do_PATCH = do_DELETE = do_PUT

    def not_allowed(self) -> None:
        """Every route here is GET: other methods get our JSON error, not http.server's
        HTML page."""
        self.close_connection = True  # we did not read the body they may have sent
        self.answer(405, {"error": f"{self.command} is not allowed here; use GET (POST only "
                                   "for /chaos/trespass)",
                          "status": 405, "service": self.service.settings.service})

    def user_orders(self, raw_id: str, query: dict[str, str]) -> None:
        """The question, as a server span in the caller's trace (a new trace if it sent
        no traceparent); our calls and reads are its children."""
        trace_id, parent = parse_traceparent(self.headers.get("traceparent"))
        with self.service.tracer.span(trace_id, parent, "GET /user-orders/{user_id}",
                                      "server", **{"http.route": "/user-orders/{user_id}",
                                                   "http.request.method": "GET"}) as span:
            traced = Traced(self.service.tracer, trace_id, span["span_id"])
            try:
                answer = self.service.user_orders(user_id_of(raw_id), query, traced)
            except HttpError as exc:
                span["attributes"]["http.response.status_code"] = exc.status
                raise
            span["attributes"]["http.response.status_code"] = 200
        self.answer(200, answer)

    def answer(self, status: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the log; errors are logged where they happen


class Server(ThreadingHTTPServer):
    """A thread per connection."""

    daemon_threads = True  # a held request does not keep the process from stopping
    request_queue_size = 128  # socketserver's 5 refuses connections under a burst


def serve(settings: Settings) -> None:
    service = Service(settings)
    Handler.service = service
    server = Server((settings.host, settings.port), Handler)
    consumer = threading.Thread(target=service.consumer.run, name="consumer", daemon=True)
    consumer.start()

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever to return, so it must run on another thread
        service.consumer.stopping.set()
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("%s listening on http://%s:%d, read model %s, from bus position %d",
             settings.service, settings.host, settings.port, service.db_path,
             service.consumer.position)
    server.serve_forever(poll_interval=0.05)
    server.server_close()
    log.info("stopped")


def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(load_settings())


if __name__ == "__main__":
    main()
