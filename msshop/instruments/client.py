"""The CLI's way into a running sandbox: one typed client for every service, over the sync
side's transport (runtime/http1.py), one kept-alive connection per service. No server
stack is imported, so commands start fast.

The typed methods are where the CLI side writes the shop's addresses; nothing above this
module builds a URL. `request` and `exchange` stay for what has no method (tests, bench).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlencode

from msshop.contracts.credentials import bearer, service_credential
from msshop.contracts.errors import SandboxError, ServiceError
from msshop.contracts.kinds import Kind
from msshop.contracts.topology import BUS, BUS_DOOR
from msshop.runtime.http1 import Connection
from msshop.runtime.orchestrator.state import State

if TYPE_CHECKING:
    from msshop.bus.interface import Bus
    from msshop.contracts.answers import UserOrders
    from msshop.contracts.shop import (
        ChaosAnswer,
        Created,
        DeadLetters,
        Order,
        ProductPage,
        Replayed,
        Trespassed,
        User,
    )
    from msshop.contracts.spans import Span
    from msshop.contracts.status import ChaosState, DeliveryJournal, Health, LinkFault

BatchKind = Literal["users", "products", "orders"]
BATCHES: dict[BatchKind, tuple[str, str]] = {
    "users": ("users", "/users/batch"), "products": ("products", "/products/batch"),
    "orders": ("orders", "/orders/batch")}
REPLAY_TIMEOUT = 600.0


@dataclass(frozen=True)
class EncodedBatch:
    """A batch POST's body, `{what: items}` as JSON, made apart from its sending: seeding
    makes the next while one is in flight (see encode_batch)."""

    what: BatchKind
    size: int  # items in it
    body: bytes


def encode_batch(what: BatchKind, items: Sequence[Any]) -> EncodedBatch:
    """Encoded with msgspec (imported here, so the commands that send no batch do not load
    it): a seed's 10,000 orders in 1.3 ms, against 9 ms with json.dumps."""
    import msgspec

    return EncodedBatch(what, len(items), msgspec.json.encode({what: items}))


@dataclass(frozen=True)
class Refused:
    """A service's 4xx/5xx answer: its status and its one line."""

    status: int
    error: str


class ShopClient:
    def __init__(self, state: State, timeout: float = 30.0) -> None:
        self.state = state
        self.timeout = timeout
        self._connections: dict[str, Connection] = {}

    # --- the shop --------------------------------------------------------------------------

    def signup(self, email: str, name: str, traceparent: str | None = None,
               credit: float | None = None) -> User:
        """`traceparent` (with the sampled flag): follow the write to the read model;
        `credit`: what the user starts with (None: the users service's default)."""
        headers = {"traceparent": traceparent} if traceparent else None
        body: dict[str, object] = {"email": email, "name": name}
        if credit is not None:
            body["credit"] = credit
        status, answer = self.exchange("users", "POST", "/users", body, headers)
        if status >= 400:
            raise ServiceError(_error_of(answer) or f"users answered HTTP {status}", status)
        return cast("User", answer)

    def products(self, limit: int, after: int = 0) -> ProductPage:
        return cast("ProductPage", self.request(
            "products", "GET", f"/products?limit={limit}&after={after}"))

    def buy(self, user_id: int, product_id: int, quantity: int = 1,
            request_id: str | None = None, wait_published_ms: int = 0,
            traceparent: str | None = None, write: str = "direct-call"
            ) -> tuple[Order, bool]:
        """(the order, whether it is new: False for a repeated request id). With
        `wait_published_ms`, the order's event carries its bus position once sent; with
        `traceparent` (sampled), the write is followed to the read model; `write`: saga
        answers the order pending (202), and products and users say the rest.

        Without a `request_id` one is made: the connection sends a request again when a
        kept connection turns out closed before any answer (runtime/http1.py), and the
        request id makes that purchase placed once even if the first had arrived."""
        body: dict[str, Any] = {"user_id": user_id, "product_id": product_id,
                                "quantity": quantity,
                                "request_id": request_id or uuid.uuid4().hex}
        query = [f"wait_published_ms={wait_published_ms}"] if wait_published_ms else []
        if write != "direct-call":
            query.append(f"write={write}")
        path = "/orders" + ("?" + "&".join(query) if query else "")
        headers = {"traceparent": traceparent} if traceparent else None
        status, answer = self.exchange("orders", "POST", path, body, headers)
        if status >= 400:
            raise ServiceError(_error_of(answer) or f"orders answered HTTP {status}", status)
        return cast("Order", answer), status in (201, 202)

    def order(self, order_id: int, wait_ms: int = 0) -> Order:
        """One order; with `wait_ms`, orders waits up to that long while it is pending."""
        path = f"/orders/{order_id}" + (f"?wait_ms={wait_ms}" if wait_ms else "")
        return cast("Order", self.request("orders", "GET", path))

    def orders_of(self, user_id: int) -> list[Order]:
        """The orders service's own record of a user's orders."""
        orders: list[Order] = self.request("orders", "GET", f"/orders?user_id={user_id}")[
            "orders"]
        return orders

    def add_batch(self, what: BatchKind, items: Sequence[Any] | EncodedBatch) -> Created:
        """POST a batch (what seeding does): `{what: items}` to that service's batch route;
        `items` may come already encoded (encode_batch)."""
        batch = items if isinstance(items, EncodedBatch) else encode_batch(what, items)
        if batch.what != what:
            raise ValueError(f"a batch of {batch.what} sent as {what}")
        service, path = BATCHES[what]
        status, raw = self.raw(service, "POST", path, batch.body)
        answer = _decoded(raw)
        if status >= 400:
            raise ServiceError(_error_of(answer) or f"{service} answered HTTP {status}", status)
        return cast("Created", answer)

    def raw_checked(self, service: str, path: str, body: bytes, as_owner: bool = False
                    ) -> None:
        """POST an encoded body (`as_owner`: with the sandbox's token, for a route only its
        owner may call); a 4xx/5xx is a ServiceError with the service's line."""
        status, raw = self.raw(service, "POST", path, body,
                               bearer(self.state.token) if as_owner else None)
        if status >= 400:
            raise ServiceError(_error_of(_decoded(raw)) or f"{service} answered HTTP {status}",
                               status)

    # --- the question ----------------------------------------------------------------------

    def user_orders(self, user_id: int, strategy: str, fanout: str | None = None,
                    after: int = 0, wait_ms: int = 0, partial: bool = False,
                    traceparent: str | None = None, kept: bool = True
                    ) -> UserOrders | Refused:
        """The answer, or what the query service said instead (a 404 for an unknown user,
        a 503 naming a dependency …), for the caller to judge. Not `kept`: the replicated
        answer is read from the read model's file even if the service keeps it (an audit)."""
        query: dict[str, Any] = {"strategy": strategy}
        if fanout:
            query["fanout"] = fanout
        if after:
            query.update(after=after, wait_ms=wait_ms)
        if partial:
            query["partial"] = 1
        if not kept:
            query["kept"] = 0
        headers = {"traceparent": traceparent} if traceparent else None
        status, answer = self.exchange("query", "GET",
                                       f"/user-orders/{user_id}?{urlencode(query)}",
                                       headers=headers)
        if status >= 400:
            return Refused(status, _error_of(answer) or f"query answered HTTP {status}")
        return cast("UserOrders", answer)

    def spans(self, service: str, trace_id: str) -> list[Span]:
        """The service's spans of that trace; none from an answer not in the shape of ours
        (a program of your own may serve GET /spans differently, or not at all)."""
        answer = self._owner(service, "GET", f"/spans?trace_id={trace_id}")
        found = answer.get("spans") if isinstance(answer, dict) else None
        if not isinstance(found, list):
            return []
        return [span for span in found if isinstance(span, dict) and "span_id" in span]

    def health(self, service: str) -> Health:
        found = self.state.services.get(service)
        if found is not None and found.kind == Kind.NATS_SERVER:  # asked at its monitoring port
            from msshop.runtime.orchestrator.lifecycle import health_of

            health = health_of(self.state, service, self.timeout)
            if health is None:
                raise SandboxError(f"{service} (nats-server) does not answer; see: msshop "
                                   f"logs {service}")
            return cast("Health", health)
        return cast("Health", self.request(service, "GET", "/health"))

    def lag(self, since: float) -> list[float]:
        """Replication lags (ms) of the events that occurred since `since` (unix seconds)."""
        lags: list[float] = self._owner("query", "GET", f"/bench/lag?since={since}")["lags_ms"]
        return lags

    def dead_letters(self, limit: int) -> DeadLetters:
        return cast("DeadLetters", self._owner("query", "GET", f"/dead-letters?limit={limit}"))

    # --- disturbing it on purpose (the sandbox's token) ------------------------------------

    def chaos(self, service: str, faults: ChaosState | LinkFault | None,
              to: str | None = None) -> ChaosAnswer:
        """Inject `faults` into a service (a value left out: 0); None clears them. With `to`,
        into its calls to that service instead (None clears that link only)."""
        body: dict[str, Any] = {"clear": True} if faults is None else {
            key: value for key, value in faults.items() if key != "links"}  # a report's
        if to is not None:
            body["to"] = to
        return cast("ChaosAnswer", self._owner(service, "POST", "/chaos", body))

    def door_chaos(self, callee: str, caller: str, fault: LinkFault | None
                   ) -> LinkFault | None:
        """Set the faults on the link from `caller`, a program of your own, to `callee`, kept
        at `callee`'s door for it (None clears them); the link's faults now."""
        body: dict[str, Any] = {"caller": caller, "clear": True} if fault is None else {
            "caller": caller, **fault}
        answer = cast("ChaosAnswer", self._owner(self.door_keeper(callee), "POST", "/chaos",
                                                 body))
        chaos = answer["chaos"]
        return chaos.get("doors", {}).get(caller) if chaos else None

    def deliveries(self, reader: str, limit: int = 10_000) -> DeliveryJournal:
        """What the bus's delivery faults handed `reader`, a program of your own, out of
        the ordinary (duplicates, late redeliveries, reorders), oldest first: kept by the
        log bus, or on nats by the bus's door."""
        return cast("DeliveryJournal", self._owner(
            self.door_keeper(BUS), "GET",
            "/chaos/deliveries?" + urlencode({"reader": reader, "limit": limit})))

    def door_keeper(self, callee: str) -> str:
        """The service that keeps the doors into `callee` for programs of your own: the
        callee itself, but for a nats bus, whose door is a process of its own."""
        if callee == BUS and BUS_DOOR.name in self.state.services:
            return BUS_DOOR.name
        return callee

    def trespass(self, service: str, into: str) -> Trespassed:
        """Make `service` try to open `into`'s database file (the guard refuses)."""
        return cast("Trespassed", self._owner(service, "POST", "/chaos/trespass",
                                              {"into": into}))

    def trespass_program(self, service: str, into: str, path: str) -> Any:
        """Ask a program of your own to open and read `path`, `into`'s file (POST
        /chaos/trespass, docs/protocol.md): its answer as sent, for the caller to check."""
        return self._owner(service, "POST", "/chaos/trespass", {"into": into, "path": path})

    def replay(self) -> Replayed:
        """Rebuild the query service's read model from position 0 of the bus."""
        return cast("Replayed", self._owner("query", "POST", "/replay", None, REPLAY_TIMEOUT))

    def _owner(self, service: str, method: str, path: str, body: Any = None,
               timeout: float | None = None) -> Any:
        """A request only the sandbox's owner may make: it carries the sandbox's token."""
        client = self if timeout is None else ShopClient(self.state, timeout)
        status, answer = client.exchange(service, method, path, body,
                                         headers=bearer(self.state.token))
        if status >= 400:
            raise ServiceError(_error_of(answer) or f"{service} answered HTTP {status}", status)
        return answer

    # --- the bus ---------------------------------------------------------------------------

    def bus(self, as_service: str | None = None) -> Bus:
        """The sandbox's bus, reached over this client's connection to it, as its owner (who
        may read it), or with a writing service's credential (tests play a service so)."""
        if self.state.bus.backend == "nats":
            from msshop.bus.jetstream import JetStreamBus

            who = as_service or "owner"
            return JetStreamBus(self.state.bus.address(who, self.state.token, self.timeout),
                                f"msshop-cli-{who}")
        from msshop.bus.event_log import EventLogBus
        from msshop.bus.interface import BusUnavailable

        secret = (self.state.token if as_service is None
                  else service_credential(self.state.token, as_service))
        headers = bearer(secret)

        async def exchange(method: str, path: str, body: bytes | None,
                           timeout: float | None) -> tuple[int, bytes]:
            try:
                return self.raw("bus", method, path, body, headers)
            except SandboxError as exc:
                raise BusUnavailable(exc.message) from None

        return EventLogBus(exchange)

    def bus_head(self) -> int:
        """The bus's last position: as the bus says in its health (the sandbox's log, or any
        running nats-server node msshop runs), else asked of the stream itself."""
        if self.state.bus.backend == "log":
            return self.health("bus").get("head", 0)
        heads = []
        for name, service in self.state.services.items():
            if service.kind == Kind.NATS_SERVER and service.status == "running":
                try:  # the highest any node holds: a follower may be behind its leader
                    heads.append(self.health(name).get("head", 0))
                except SandboxError:
                    continue
        if heads:
            return max(heads)
        import asyncio

        async def head() -> int:
            bus = self.bus()
            try:
                return await bus.head()
            finally:
                await bus.close()

        return asyncio.run(head())

    # --- HTTP ------------------------------------------------------------------------------

    def request(self, service: str, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> Any:
        """The decoded JSON answer; errors become SandboxError (down) or ServiceError (4xx/5xx)."""
        status, data = self.exchange(service, method, path, body, headers)
        if status >= 400:
            raise ServiceError(_error_of(data) or f"{service} answered HTTP {status}", status)
        return data

    def exchange(self, service: str, method: str, path: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, decoded JSON) without judging the status."""
        payload = None if body is None else json.dumps(body).encode()
        status, raw = self.raw(service, method, path, payload, headers)
        return status, _decoded(raw)

    def raw(self, service: str, method: str, path: str, payload: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body bytes); a service that cannot be reached is a SandboxError."""
        headers = dict(headers or {})
        if payload is not None:
            headers["content-type"] = "application/json"
        try:  # a kept connection the server had closed is opened again (Connection)
            return self._connection(service).request(method, path, payload, headers)
        except (OSError, ValueError) as exc:  # ValueError: a path that would change meaning
            self._connections.pop(service, None)  # closed by the failed request
            raise self._down(service, exc) from None

    def _connection(self, service: str) -> Connection:
        conn = self._connections.get(service)
        if conn is None:
            port = self.state.services[service].port
            conn = Connection(self.state.host, port, self.timeout)
            self._connections[service] = conn
        return conn

    def _down(self, service: str, exc: Exception) -> SandboxError:
        info = self.state.services[service]
        if isinstance(exc, TimeoutError):
            return SandboxError(f"{service} did not answer within {self.timeout:g} s at "
                                f"{info.url}; see: msshop logs {service}")
        if info.status == "running":  # its process lives (as the state last said)
            return SandboxError(f"{service} is not answering at {info.url} ({exc}) though "
                                f"its process runs; see: msshop logs {service}, or restart "
                                f"it: msshop restart {service}")
        return SandboxError(f"{service} is not answering at {info.url} ({exc}); "
                            f"check with: msshop status, start it with: msshop start {service}")

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()


def _decoded(raw: bytes) -> Any:
    """An answer's JSON; one that is not JSON as {"error": its first 200 bytes}."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return {"error": raw[:200].decode(errors="replace")}


def _error_of(answer: Any) -> str | None:
    """The one-line error a service answered with, if it said one."""
    error = answer.get("error") if isinstance(answer, dict) else None
    return str(error) if error else None
