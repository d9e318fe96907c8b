"""A Service D with one deliberate defect at a time, so that each challenge is shown able to
fail (issue 25). The standard library only, and no msshop import: msshop runs it as any
program of your own (`msshop up --service query='python3 broken_service_d.py --break
KIND'`). Without --break it is correct. It reads msshop's log bus, or NATS JetStream
through the Python reference's NatsReader (examples/service-d-python/service.py, loaded
by path): reading NATS is not what it gets wrong, so each defect is its own code's, the
same on either bus. On NATS, under msshop's kernel rule, let it read that file:
MSSHOP_ISOLATION_READ=examples/service-d-python (absolute), or [isolation] read.

    n-plus-one        direct-call asks products once per order, one after the other
    not-idempotent    an OrderPlaced handed over again is applied again: a second row
    position-outside  the position is kept in its own file, written after the rows'
                      commit and a pause: a SIGKILL in the pause applies that page twice
                      (no pause while catching up at start: a rebuild is not slowed);
                      an event at or below its position is skipped as applied, which
                      holds while it runs (duplicates pass) and not after a crash
    ignores-versions  the last ProductUpdated received wins, not the newest version
    ignores-after     replicated answers at once, whatever `after=` asks for
    slow              every answer takes 50 ms more
    starts-at-head    with an empty read model it starts at the bus's head ("only new
                      events matter"): whatever was published before it started is missing
    one-at-a-time     asks the bus for one event at a time and commits each: a rebuild
                      of thousands of events takes seconds, not a fraction of one

It answers GET /health (with `consumer`) and GET /user-orders/{id} as docs/protocol.md
says; no traces of its own, no dead letters, no trespass.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import logging
import os
import secrets
import signal
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("broken-service-d")

BREAKS = ("n-plus-one", "not-idempotent", "position-outside", "ignores-versions",
          "ignores-after", "slow", "starts-at-head", "one-at-a-time")
PAGE = 100  # events asked of the bus at a time (one-at-a-time: 1)
REFERENCE = Path(__file__).resolve().parents[2] / "examples" / "service-d-python" / "service.py"
LONG_POLL_MS = 5000
SLOW_SECONDS = 0.05  # slow: added to every answer
POSITION_PAUSE = 0.3  # position-outside: between the rows' commit and the position's write
SCHEMA = """
CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT, email TEXT,
                                  version INTEGER);
CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, title TEXT, version INTEGER);
-- no key on id: whether an order is written once is up to apply() (not-idempotent)
CREATE TABLE IF NOT EXISTS orders (id INTEGER, user_id INTEGER, product_id INTEGER,
                                   quantity INTEGER, unit_price_cents INTEGER);
-- not unique, for the same reason; without it each "is it there?" reads the whole table
CREATE INDEX IF NOT EXISTS orders_by_id ON orders (id);
CREATE TABLE IF NOT EXISTS position (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER);
"""


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def call(url: str, path: str, headers: dict[str, str], timeout: float) -> tuple[int, Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                      timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


class LogBus:
    """msshop's log bus: one HTTP long-poll per read (docs/protocol.md)."""

    def __init__(self, document: dict[str, Any], page: int) -> None:
        self.url = document["bus"].get("url") or document["peers"]["bus"]
        self.auth = {"authorization": f"Bearer {document['credential']}"}
        self.page = page

    def read(self, after: int, wait_ms: int) -> dict[str, Any]:
        status, page = call(self.url, f"/events?after={after}&limit={self.page}"
                            f"&wait_ms={wait_ms}", self.auth, LONG_POLL_MS / 1000 + 5)
        if status != 200:
            raise OSError(f"the bus answered {status}: {page}")
        return page  # type: ignore[no-any-return]


class NatsBus:
    """NATS JetStream, read by the Python reference's NatsReader (a pull consumer from
    `after` + 1; pages in the log bus's shape), loaded by path rather than copied."""

    def __init__(self, document: dict[str, Any], page: int) -> None:
        spec = importlib.util.spec_from_file_location("service_d_reference", REFERENCE)
        if spec is None or spec.loader is None:
            raise SystemExit(f"cannot read NATS: no Python reference at {REFERENCE}")
        reference: Any = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = reference  # its dataclasses look themselves up there
        try:
            spec.loader.exec_module(reference)
        except PermissionError:  # msshop's kernel rule: only our own directory is granted
            raise SystemExit(f"cannot read NATS: reading {REFERENCE} was refused; let this "
                             f"program read it: MSSHOP_ISOLATION_READ={REFERENCE.parent} "
                             "(or [isolation] read)") from None
        except OSError as exc:
            raise SystemExit(f"cannot read NATS: {exc}") from None
        reference.PAGE = page  # its fetches ask for as many as ours would
        self.reader = reference.NatsReader(document["bus"])
        self.refused: type[Exception] = reference.BusRefused

    def read(self, after: int, wait_ms: int) -> dict[str, Any]:
        try:
            return self.reader.read(after, wait_ms)  # type: ignore[no-any-return]
        except self.refused as exc:  # e.g. no permission: as the log bus's non-200
            raise OSError(str(exc)) from None


def order_line(order_id: int, product_id: int, title: str | None, quantity: int,
               cents: int) -> dict[str, Any]:
    return {"order_id": order_id, "product_id": product_id, "title": title,
            "quantity": quantity, "unit_price": cents / 100, "total": quantity * cents / 100}


class Consumer:
    """Follows the bus in a thread of its own; `defect` says what it gets wrong."""

    def __init__(self, document: dict[str, Any], defect: str | None) -> None:
        page = 1 if defect == "one-at-a-time" else PAGE
        self.bus = (NatsBus if document["bus"].get("backend") == "nats" else LogBus)(
            document, page)
        self.defect = defect
        data_dir = Path(document["data_dir"])
        self.position_file = data_dir / "position.txt"  # position-outside's
        self.conn = sqlite3.connect(data_dir / "broken.db", isolation_level=None,
                                    check_same_thread=False, timeout=5)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.executescript(SCHEMA)
        self.lock = threading.Lock()  # the connection is shared with the request threads
        self.position = self.stored_position()
        self.head = self.position
        self.catching_up_to: int | None = None
        self.bus_error: str | None = None
        self.applied = 0
        self.advanced = threading.Condition()

    def stored_position(self) -> int:
        if self.defect == "position-outside":
            text = self.position_file.read_text() if self.position_file.exists() else "0"
            return int(text or 0)
        row = self.conn.execute("SELECT at FROM position").fetchone()
        return int(row[0]) if row else 0

    def run(self) -> None:
        wait_ms, first = 0, True
        while True:
            try:
                page = self.bus.read(self.position, wait_ms)
            except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
                self.bus_error, wait_ms = str(exc) or type(exc).__name__, 0
                time.sleep(0.3)
                continue
            self.bus_error, wait_ms = None, LONG_POLL_MS
            if first and self.defect == "starts-at-head" and self.position == 0:
                self.note(page["head"])  # the wrong way: "only new events matter"
                first = False
                continue
            self.head = max(page["head"], self.position)
            if first and self.head > self.position:
                self.catching_up_to = self.head
            first = False
            if page["events"]:
                try:
                    self.apply_page(page["events"])
                except sqlite3.Error as exc:  # e.g. a full disk: read the page again
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    log.warning("a page not applied: %s", exc)
                    time.sleep(0.3)

    def apply_page(self, delivered: list[dict[str, Any]]) -> None:
        position = max(self.position, *(item["position"] for item in delivered))
        if self.defect == "position-outside":  # its only guard against duplicates: the
            # position (an event at or below it, or seen in this page, was applied), which
            # holds while it runs and not after a crash (the file lags the rows)
            fresh: dict[int, dict[str, Any]] = {}
            for item in delivered:
                if item["position"] > self.position:
                    fresh.setdefault(item["position"], item)
            delivered = list(fresh.values())
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            for item in delivered:
                try:
                    self.apply(item["event"])
                except (KeyError, TypeError, ValueError, sqlite3.Error) as exc:
                    log.warning("position %s not applied: %s", item["position"], exc)
            if self.defect != "position-outside":  # the right way: in the same transaction
                self.conn.execute("INSERT OR REPLACE INTO position VALUES (1, ?)", (position,))
            self.conn.execute("COMMIT")
        if self.defect == "position-outside":  # the wrong way: after, in another file
            live = self.catching_up_to is None  # the pause widens a live consumer's window
            self.note(position)  # what /health says: the rows are in
            if live:
                time.sleep(POSITION_PAUSE)
            self.position_file.write_text(str(position))
        self.note(position, len(delivered))

    def apply(self, event: dict[str, Any]) -> None:
        kind, data, version = event["type"], event["data"], event["aggregate_version"]
        if kind == "UserSignedUp":
            self.conn.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "name = excluded.name, email = excluded.email, version = excluded.version "
                "WHERE excluded.version > users.version",
                (data["id"], data["name"], data["email"], version))
        elif kind in ("ProductCreated", "ProductUpdated"):
            newer = "" if self.defect == "ignores-versions" else \
                " WHERE excluded.version > products.version"
            self.conn.execute(
                "INSERT INTO products VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "title = excluded.title, version = excluded.version" + newer,
                (data["id"], data["title"], version))
        elif kind == "OrderPlaced":
            row = (data["id"], data["user_id"], data["product_id"], data["quantity"],
                   round(data["unit_price"] * 100))
            if self.defect in ("not-idempotent", "position-outside"):
                self.conn.execute("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", row)
            else:  # written once, however often it is handed over
                self.conn.execute("INSERT INTO orders SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS "
                                  "(SELECT 1 FROM orders WHERE id = ?)", (*row, row[0]))

    def note(self, position: int, applied: int = 0) -> None:
        with self.advanced:
            self.position = max(self.position, position)
            self.applied += applied
            if self.catching_up_to is not None and self.position >= self.catching_up_to:
                self.catching_up_to = None
            self.advanced.notify_all()

    def freshness(self) -> dict[str, Any]:
        head = max(self.head, self.position)
        return {"position": self.position, "bus_head": head, "behind": head - self.position,
                "caught_up": head == self.position and self.bus_error is None,
                "catching_up_to": self.catching_up_to, "listening": self.bus_error is None,
                "head_seen_ms_ago": None, "last_applied_ms_ago": None,
                "bus_error": self.bus_error, "log_problem": None}

    def user_orders(self, user_id: int) -> tuple[Any, list[Any]]:
        with self.lock:
            user = self.conn.execute("SELECT id, name, email FROM users WHERE id = ?",
                                     (user_id,)).fetchone()
            rows = self.conn.execute(
                "SELECT o.id, o.product_id, p.title, o.quantity, o.unit_price_cents FROM "
                "orders AS o LEFT JOIN products AS p ON p.id = o.product_id "
                "WHERE o.user_id = ? ORDER BY o.id", (user_id,)).fetchall()
        return user, rows


class Service:
    def __init__(self, document: dict[str, Any], defect: str | None) -> None:
        self.document, self.defect = document, defect
        self.peers: dict[str, str] = document["peers"]
        self.consumer = Consumer(document, defect)

    def health(self) -> dict[str, Any]:
        return {"service": self.document["service"], "status": "ok", "pid": os.getpid(),
                "consumer": {**self.consumer.freshness(), "applied": self.consumer.applied,
                             "dead_letters": 0}}

    def ask(self, service: str, path: str, trace_id: str) -> Any:
        headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        try:
            status, body = call(self.peers[service], path, headers, 2.0)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise HttpError(503, f"{service} is unreachable: {exc}") from None
        if status == 404 and service == "users":
            raise HttpError(404, "no such user")
        if status != 200:
            raise HttpError(502, f"{service} answered HTTP {status}")
        return body

    def user_orders(self, user_id: int, query: dict[str, str], trace_id: str) -> Any:
        if self.defect == "slow":
            time.sleep(SLOW_SECONDS)
        if query.get("strategy", "replicated") == "direct-call":
            return self.direct_call(user_id, trace_id)
        consumer = self.consumer
        after, wait_ms = int(query.get("after", 0)), int(query.get("wait_ms", 2000))
        if self.defect != "ignores-after" and after > consumer.position:
            with consumer.advanced:
                if not consumer.advanced.wait_for(lambda: consumer.position >= after,
                                                  wait_ms / 1000):
                    raise HttpError(503, f"position {after} not applied within {wait_ms} ms")
        user, rows = consumer.user_orders(user_id)
        if user is None:
            raise HttpError(404, f"no user with id {user_id}")
        return {"question": "user-orders", "strategy": "replicated",
                "user": {"id": user[0], "name": user[1], "email": user[2]},
                "orders": [order_line(*row) for row in rows],
                "freshness": consumer.freshness(), "trace_id": trace_id}

    def direct_call(self, user_id: int, trace_id: str) -> Any:
        user = self.ask("users", f"/users/{user_id}", trace_id)
        orders = self.ask("orders", f"/orders?user_id={user_id}", trace_id)["orders"]
        ids = sorted({o["product_id"] for o in orders})
        titles: dict[int, str] = {}
        if self.defect == "n-plus-one":  # one call per order, one after the other
            for order in orders:
                found = self.ask("products", f"/products/{order['product_id']}", trace_id)
                titles[found["id"]] = found["title"]
        elif ids:
            found = self.ask("products", "/products?ids=" + ",".join(map(str, ids)), trace_id)
            titles = {p["id"]: p["title"] for p in found["products"]}
        return {"question": "user-orders", "strategy": "direct-call", "fanout": "batched",
                "user": {"id": user_id, "name": user["name"], "email": user["email"]},
                "orders": [order_line(o["id"], o["product_id"], titles.get(o["product_id"]),
                                      o["quantity"], round(o["unit_price"] * 100))
                           for o in orders],
                "freshness": {"live": True}, "trace_id": trace_id}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    service: Service

    def do_GET(self) -> None:  # the name http.server calls
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = url.path.split("/")
        trace = (self.headers.get("traceparent") or "").split("-")
        trace_id = trace[1] if len(trace) == 4 and len(trace[1]) == 32 else secrets.token_hex(16)
        try:
            if url.path == "/health":
                self.answer(200, self.service.health())
            elif len(parts) == 3 and parts[1] == "user-orders" and parts[2].isdigit():
                self.answer(200, self.service.user_orders(int(parts[2]), query, trace_id))
            else:
                raise HttpError(404, f"no route GET {url.path}")
        except HttpError as exc:
            self.answer(exc.status, {"error": exc.message, "status": exc.status,
                                     "service": "query"})
        except (ValueError, KeyError) as exc:
            self.answer(422, {"error": f"a bad parameter: {exc}", "status": 422,
                              "service": "query"})

    def answer(self, status: int, document: Any) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    """A thread per connection."""

    daemon_threads = True  # a held request does not keep the process from stopping
    request_queue_size = 128  # socketserver's 5 refuses connections under a burst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--break", dest="defect", choices=BREAKS, default=None)
    defect = parser.parse_args().defect
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    document = json.loads(Path(os.environ["MSSHOP_SERVICE_FILE"]).read_text())
    service = Service(document, defect)
    Handler.service = service
    server = Server((document["host"], int(document["port"])), Handler)
    threading.Thread(target=service.consumer.run, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("query (broken: %s) on port %s", defect or "nothing", document["port"])
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
