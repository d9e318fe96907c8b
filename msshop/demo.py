"""`msshop demo`: a throw-away sandbox, seeded, shown, and stopped, leaving nothing behind.

This first version walks the sandbox itself: up -> seed -> a listing -> down. The scripted
lessons (monolith join, direct-call, replicated, compare) come with the query service.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from msshop import render
from msshop.client import ShopClient
from msshop.config import Settings
from msshop.orchestrator import lifecycle
from msshop.seed import SeedPlan, seed

DEMO_PLAN = SeedPlan(users=100, products=40, orders=1000, seed=42)


def run(settings: Settings, console: Any) -> None:
    root = Path(tempfile.mkdtemp(prefix="msshop-demo-"))
    config = dataclasses.replace(settings, sandbox_dir=root / "sandbox", base_port=0)
    try:
        render.step(console, "Start the shop: users, products and orders, each its own "
                             "process with its own SQLite file.",
                    f"export MSSHOP_SANDBOX={config.sandbox_dir} MSSHOP_BASE_PORT=0\n"
                    "msshop up --detach")
        started = time.perf_counter()
        state, _ = lifecycle.up_detached(config)
        render.ready(console, state, time.perf_counter() - started)
        try:
            client = ShopClient(state)
            render.step(console, "Fill it with people, products and purchases, written "
                                 "through the services' own APIs.",
                        f"msshop seed --users {DEMO_PLAN.users} --products "
                        f"{DEMO_PLAN.products} --orders {DEMO_PLAN.orders}")
            with render.seed_progress(console) as progress:
                report = seed(client, DEMO_PLAN, progress)
            render.seed_report(console, report)
            render.step(console, "Each service answers only for its own data.",
                        "msshop products --limit 8")
            render.products(console, client.request("products", "GET", "/products?limit=8"))
            render.step(console, "The orders service knows user 1's purchases, but not "
                                 "what the products are: that lives in another service.",
                        "curl " + state.services["orders"].url + "/orders?user_id=1")
            answer = client.request("orders", "GET", "/orders?user_id=1")
            render.orders(console, answer["orders"][:8], len(answer["orders"]))
            render.step(console, "Where each one keeps its data, and how many rows.",
                        "msshop status")
            render.status(console, lifecycle.status(config))
        finally:
            render.step(console, "Stop everything.", "msshop down")
            render.stopped(console, lifecycle.down(config))
    finally:
        shutil.rmtree(root, ignore_errors=True)
