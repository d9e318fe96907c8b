"""Deterministic, realistic shop data, written through the services' own batch APIs.

The same seed always makes the same people, products and purchases, and each carries a
natural key (email, sku, request_id), so seeding twice adds nothing the second time.
Each kind of data has its own random stream: asking for more orders keeps the first ones.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from msshop.instruments.client import ShopClient

BATCH = 2000
T = TypeVar("T")
Progress = Callable[[str, int, int], None]  # (what, done, total)

FIRST = ["Ada", "Alan", "Amara", "Ana", "Arjun", "Ben", "Chen", "Chloe", "Dara", "Diego",
         "Elena", "Emeka", "Fatima", "Femi", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jun",
         "Kai", "Lea", "Leila", "Liam", "Lucia", "Mara", "Mateo", "Mei", "Nia", "Noah",
         "Omar", "Priya", "Rosa", "Sam", "Sofia", "Tariq", "Yara", "Yusuf", "Zoe", "Zola"]
LAST = ["Adeyemi", "Andersen", "Bauer", "Chen", "Costa", "Dubois", "Evans", "Fischer",
        "Garcia", "Haddad", "Ito", "Jensen", "Khan", "Kowalski", "Lopez", "Mensah", "Moreau",
        "Nakamura", "Novak", "Okafor", "Olsen", "Patel", "Rossi", "Santos", "Schmidt", "Silva",
        "Singh", "Tanaka", "Virtanen", "Wang"]
CATALOGUE: dict[str, tuple[list[str], tuple[int, int]]] = {
    "hats": (["beanie", "fedora", "baseball cap", "bucket hat", "sun hat", "beret"], (12, 60)),
    "pants": (["jeans", "chinos", "cargo pants", "joggers", "corduroys"], (30, 120)),
    "shoes": (["sneakers", "boots", "loafers", "sandals", "running shoes"], (40, 180)),
    "shirts": (["t-shirt", "oxford shirt", "polo", "flannel shirt", "henley"], (15, 80)),
    "jackets": (["rain jacket", "denim jacket", "parka", "bomber", "fleece"], (50, 250)),
    "socks": (["ankle socks", "hiking socks", "dress socks"], (5, 20)),
    "scarves": (["wool scarf", "silk scarf", "snood"], (15, 70)),
    "bags": (["tote", "backpack", "messenger bag", "duffel"], (25, 150)),
}
STYLES = ["classic", "vintage", "waterproof", "wool", "linen", "leather", "organic cotton",
          "recycled", "slim", "relaxed", "everyday", "trail", "city", "heavyweight"]
COLOURS = ["black", "navy", "olive", "sand", "grey", "red", "forest green", "mustard",
           "white", "burgundy", "indigo", "rust"]
QUANTITIES = ([1] * 70) + ([2] * 20) + ([3] * 7) + [4, 4, 5]


@dataclass(frozen=True)
class SeedPlan:
    users: int
    products: int
    orders: int
    seed: int


@dataclass
class SeedReport:
    plan: SeedPlan
    created: dict[str, int]
    existing: dict[str, int]
    seconds: dict[str, float]

    def rate(self, what: str) -> float:
        total = self.created[what] + self.existing[what]
        return total / self.seconds[what] if self.seconds[what] else 0.0


def make_users(plan: SeedPlan) -> list[dict[str, str]]:
    rng = random.Random(f"{plan.seed}-users")
    people = []
    for n in range(1, plan.users + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        people.append({"name": f"{first} {last}",
                       "email": f"{first}.{last}.{n}@example.com".lower()})
    return people


def make_products(plan: SeedPlan) -> list[dict[str, Any]]:
    rng = random.Random(f"{plan.seed}-products")
    products = []
    for n in range(1, plan.products + 1):
        category = rng.choice(list(CATALOGUE))
        items, (low, high) = CATALOGUE[category]
        title = f"{rng.choice(COLOURS)} {rng.choice(STYLES)} {rng.choice(items)}".capitalize()
        price = rng.randint(low, high) + rng.choice((0.0, 0.49, 0.99))
        products.append({"sku": f"seed{plan.seed}-{category}-{n:06d}", "title": title,
                         "price": round(price, 2), "stock": rng.randint(0, 500)})
    return products


def make_orders(plan: SeedPlan, user_ids: list[int], product_ids: list[int]
                ) -> Iterator[dict[str, Any]]:
    """Purchases skewed as shops are: a few people buy a lot, most buy a little."""
    rng = random.Random(f"{plan.seed}-orders")
    for n in range(1, plan.orders + 1):
        user = user_ids[int(len(user_ids) * rng.random() ** 2)]
        product = product_ids[int(len(product_ids) * rng.random() ** 1.5)]
        yield {"user_id": user, "product_id": product, "quantity": rng.choice(QUANTITIES),
               "request_id": f"seed{plan.seed}-order-{n}"}


def batches(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def seed(client: ShopClient, plan: SeedPlan, progress: Progress | None = None) -> SeedReport:
    report = SeedReport(plan, created={}, existing={}, seconds={})
    tell: Progress = progress or (lambda what, done, total: None)

    def load(what: Literal["users", "products", "orders"], items: list[dict[str, Any]]
             ) -> list[int]:
        """POST the items in batches; the ids the service gave them, in order (if it says)."""
        started = time.perf_counter()
        ids: list[int] = []
        created = done = 0
        tell(what, 0, len(items))
        for batch in batches(items, BATCH):
            answer = client.add_batch(what, batch)
            ids.extend(answer.get("ids", []))
            created += answer["created"]
            done += len(batch)
            tell(what, done, len(items))
        report.created[what] = created
        report.existing[what] = len(items) - created
        report.seconds[what] = time.perf_counter() - started
        return ids

    user_ids = load("users", list(make_users(plan)))
    product_ids = load("products", make_products(plan))
    load("orders", list(make_orders(plan, user_ids, product_ids)))
    return report
