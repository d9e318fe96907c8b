"""A challenge's sandbox of its own: in a temporary directory, on free ports, taken down
and removed however the trial ends (as `msshop experiment` does), and the data every
trial starts from."""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from msshop.contracts.config import Settings
from msshop.contracts.errors import MsshopError
from msshop.instruments.client import ShopClient
from msshop.runtime.orchestrator import lifecycle
from msshop.runtime.orchestrator.state import State

#: each user's number of orders: none, a few, and many (so an answer's cost can be seen
#: growing with them, or not)
ORDER_COUNTS = (0, 1, 2, 3, 5, 8, 13, 40)
PRODUCTS = max(ORDER_COUNTS)  # a user with k orders bought k different products
LOGS_HINT = re.compile(r"; see: msshop logs \S+$")
#: where a learner sees what their program wrote, the challenge's sandbox being removed
RUN_IT_YOURSELF = "run it yourself: msshop up --service query='CMD', then msshop logs query"


@contextmanager
def own_sandbox(settings: Settings, name: str) -> Iterator[tuple[Settings, State]]:
    """Started with `settings` (the learner's command in it), its settings and state."""
    root = Path(tempfile.mkdtemp(prefix=f"msshop-challenge-{name}-"))
    config = dataclasses.replace(settings, sandbox_dir=root / "sandbox", base_port=0)
    try:
        try:
            lifecycle.up_detached(config)
        except MsshopError as exc:  # its logs go with the sandbox: no `msshop logs` to see
            raise type(exc)(LOGS_HINT.sub("", exc.message)) from None
        try:
            yield config, lifecycle.running_state(config)
        finally:
            lifecycle.down(config)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Cast:
    """The trial's own users and products: user id -> how many orders they placed."""

    users: dict[int, int]
    products: list[int]


def seed(client: ShopClient, tag: str = "challenge") -> Cast:
    """Users with ORDER_COUNTS orders each, of distinct products, through the services'
    own APIs (so every row is also an event on the bus)."""
    people = client.add_batch("users", [
        {"email": f"{tag}-{n}@challenge.example", "name": f"Learner {n}",
         "credit": 100_000_000.0}
        for n in range(len(ORDER_COUNTS))])["ids"]
    products = client.add_batch("products", [
        {"title": f"Challenge item {n}", "price": 2.5 + n, "stock": 1_000_000,
         "sku": f"{tag}-{n}"} for n in range(PRODUCTS)])["ids"]
    orders = [{"user_id": user, "product_id": products[k], "quantity": 1 + k % 3,
               "request_id": f"{tag}-{user}-{k}"}
              for user, count in zip(people, ORDER_COUNTS, strict=True) for k in range(count)]
    client.add_batch("orders", orders)
    return Cast(dict(zip(people, ORDER_COUNTS, strict=True)), products)
