"""What the shop's services answer to the outside (the CLI, seed, bench, demos): users,
products, orders, the answers of their batch and admin endpoints, and errors. TypedDicts:
the services already send these dicts, and the CLI reads them without importing msgspec.
The services' OpenAPI documents (GET /openapi.json) are generated from these types."""

# No `from __future__ import annotations` here: a TypedDict with string annotations
# compiles each one as it is defined (4x the time), and the services import these
# on the way to their start (their OpenAPI documents name them).
from enum import StrEnum
from typing import NotRequired, TypedDict

from msshop.contracts.answers import Buyer, OrderLine, ReplicaFreshness
from msshop.contracts.status import ChaosState, LinkFault


class Error(TypedDict):
    """Every error answer: one line a person can act on, the status, and who answered; when
    another service failed, which (`dependency`) and how (`failure`: refused, timeout, 5xx,
    4xx); a replicated read that cannot answer says how fresh the read model is."""

    error: str
    status: int
    service: str
    dependency: NotRequired[str]
    failure: NotRequired[str]
    freshness: NotRequired[ReplicaFreshness]


class User(TypedDict):
    id: int
    email: str
    name: str
    created_at: float
    credit: float  # what the user may still spend, in the shop's currency


class Product(TypedDict):
    id: int
    sku: str | None
    title: str
    price: float
    stock: int
    updated_at: float
    version: int


class UsersFound(TypedDict):
    """GET /users?ids=: the users found, in the order asked, and the ids not found."""

    users: list[User]
    missing: list[int]


class ProductPage(TypedDict):
    """GET /products?after=&limit=: a page in id order; `next_after` asks for the next one."""

    products: list[Product]
    next_after: int | None


class ProductsFound(TypedDict):
    """GET /products?ids=: the products found, in the order asked, and the ids not found."""

    products: list[Product]
    missing: list[int]


class EventRef(TypedDict):
    """The event a write recorded, and its bus position once the relay has sent it."""

    id: str
    type: str
    position: int | None


class OrderStatus(StrEnum):
    """Where an order stands. Monolith and direct-call orders are confirmed as they are
    written; a saga's is pending (the semantic lock: readers see it) until products and
    users have said, then confirmed or rejected (with the reason)."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


class Order(TypedDict):
    id: int
    user_id: int
    product_id: int
    quantity: int
    unit_price: float  # a pending saga order's is 0: the price is products' to say
    total: float
    request_id: str | None
    created_at: float
    status: OrderStatus
    reason: str | None  # why it was rejected (null unless rejected)
    event: NotRequired[EventRef | None]


class OrdersOfUser(TypedDict):
    """GET /orders?user_id=: a user's orders, oldest first."""

    user_id: int
    orders: list[Order]


class Created(TypedDict):
    """A batch endpoint's answer: how many were new; `ids` in input order (users, products)."""

    created: int
    ids: NotRequired[list[int]]
    existing: NotRequired[int]


class ChaosAnswer(TypedDict):
    """POST /chaos: the faults now injected into the requests the service answers (null:
    none), and into its calls to each other service (only links with a fault)."""

    service: str
    chaos: ChaosState | None
    links: dict[str, LinkFault]


class Trespassed(TypedDict):
    """POST /chaos/trespass: a service tried to open another's file; what the guard said."""

    service: str
    into: str
    tried: str  # the path it tried to open
    # the isolation guard's words, or the kernel's (a program of your own: the OS's, or "")
    refused: str
    # a program of your own (POST /chaos/trespass of docs/protocol.md): whether the rule
    # held (False: it opened and read the file)
    held: NotRequired[bool]
    how: NotRequired[str]  # the door: sqlite | open | ctypes | child | symlink | hardlink
    by: NotRequired[str]  # who refused: guard (in-process) | kernel (its Landlock rule)


class Replayed(TypedDict):
    """POST /replay: the read model rebuilt from position 0 and swapped in."""

    events: int
    seconds: float
    per_second: float
    position: int
    position_before: int
    dead_letters: int


class Floor(TypedDict):
    """GET /bench/floor/{id}: one indexed read of the read model (null: no such user)."""

    id: int
    name: str


class FloorRows(TypedDict):
    """GET /bench/floor-rows/{id}: the replicated answer's rows, read and encoded, nothing
    else (user null: no such user)."""

    user: Buyer | None
    orders: list[OrderLine]


class Lags(TypedDict):
    """GET /bench/lag: replication lags (ms, sorted) of the events since a time."""

    lags_ms: list[float]


class DeadLetter(TypedDict):
    position: int
    event_id: str | None
    type: str | None
    reason: str
    dead_at: float
    body: str


class DeadLetters(TypedDict):
    count: int
    dead_letters: list[DeadLetter]
