"""Naive Service Ds for the challenge tests: the Python reference (its path is the first
argument, so the kernel's rule lets this program read it) with one thing made naive, by
the second argument:

- n-plus-1 (the default): its one products call for all titles swapped for one call per
  product. Its answers stay right; rung 2 (batched) must fail it, naming the user and
  how many requests products got;
- calls-at-query-time: its replicated answers made by calling the owners, as direct-call
  does. Right while they answer; rung 3 (read-model) must fail it;
- slow: each replicated answer a quarter of a second late. Right; rung 10 (fast) must
  fail it, msshop's own figures beside;
- hang: healthy, but no answer to the question ever comes (each waits a minute);
- not-idempotent: an OrderPlaced handed over again is written again (its orders table
  without a key, each one inserted as it comes). Right until the bus hands an event
  twice; rung 4 (at-least-once) must fail it, on either bus, naming the duplicate;
- hides-bus-errors: its /health never says the bus is gone (consumer.bus_error stays
  empty). A checker that must see it cut off from the bus cannot tell: unknown.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from typing import Any

spec = importlib.util.spec_from_file_location("service_d", sys.argv[1])
assert spec is not None and spec.loader is not None
reference: Any = importlib.util.module_from_spec(spec)
sys.modules["service_d"] = reference  # its dataclasses look their module up by name
spec.loader.exec_module(reference)
mode = sys.argv[2] if len(sys.argv) > 2 else "n-plus-1"


def replicated_by_calling(self: Any, user_id: int, after: int, wait_ms: int, traced: Any
                          ) -> dict[str, Any]:
    user, orders = reference.direct_call(self.settings, traced, user_id, "batched")
    return {"question": "user-orders", "strategy": "replicated", "user": user,
            "orders": orders, "freshness": {"live": True}, "trace_id": traced.trace_id}


def slowly(answer: Any) -> Any:
    def late(*args: Any) -> Any:
        time.sleep(0.25)
        return answer(*args)

    return late


if mode == "n-plus-1":
    reference.product_titles = reference.product_titles_one_by_one
elif mode == "calls-at-query-time":
    reference.Service.replicated = replicated_by_calling
elif mode == "hang":
    reference.Service.user_orders = lambda *args: time.sleep(60)
elif mode == "slow":
    reference.Service.replicated = slowly(reference.Service.replicated)
elif mode == "not-idempotent":
    reference.SCHEMA = reference.SCHEMA.replace("id INTEGER PRIMARY KEY, user_id",
                                                "id INTEGER, user_id")
    apply_once = reference.apply_event

    def apply_again(conn: Any, event: dict[str, Any]) -> None:
        if event.get("type") != "OrderPlaced":
            return apply_once(conn, event)  # type: ignore[no-any-return]
        data = event["data"]
        conn.execute("INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
                     (data["id"], data["user_id"], data["product_id"], data["quantity"],
                      reference.cents(data, "unit_price")))
        return None

    reference.apply_event = apply_again
elif mode == "hides-bus-errors":
    def quietly(self: Any, why: str) -> None:
        self.listening = False
        self.stopping.wait(0.5)

    reference.Consumer.note_bus_down = quietly
else:
    sys.exit(f"unknown mode {mode!r}: n-plus-1, calls-at-query-time, slow, hang, "
             "not-idempotent or hides-bus-errors")
reference.main()
