"""What the shop's services answer to the outside (the CLI, seed, bench, demos): users,
products, orders and the answers of their batch and admin endpoints. TypedDicts: the
services already send these dicts, and the CLI reads them without importing msgspec."""

from __future__ import annotations

from typing import NotRequired, TypedDict

from msshop.contracts.status import ChaosState


class User(TypedDict):
    id: int
    email: str
    name: str
    created_at: float


class Product(TypedDict):
    id: int
    sku: str | None
    title: str
    price: float
    stock: int
    updated_at: float
    version: int


class ProductPage(TypedDict):
    products: list[Product]
    next_after: int | None


class EventRef(TypedDict):
    """The event a write recorded, and its bus position once the relay has sent it."""

    id: str
    type: str
    position: int | None


class Order(TypedDict):
    id: int
    user_id: int
    product_id: int
    quantity: int
    unit_price: float
    total: float
    request_id: str | None
    created_at: float
    event: NotRequired[EventRef | None]


class Created(TypedDict):
    """A batch endpoint's answer: how many were new; `ids` in input order (users, products)."""

    created: int
    ids: NotRequired[list[int]]
    existing: NotRequired[int]


class ChaosAnswer(TypedDict):
    service: str
    chaos: ChaosState | None


class Replayed(TypedDict):
    """POST /replay: the read model rebuilt from position 0 and swapped in."""

    events: int
    seconds: float
    per_second: float
    position: int
    position_before: int
    dead_letters: int


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
