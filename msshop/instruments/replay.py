"""`msshop replay`: rebuild a read model from position 0 of the bus, then swap it in (the
query service does the work, reading the log through its bus; this asks it to)."""

from __future__ import annotations

from msshop.contracts.config import Settings
from msshop.contracts.errors import UsageError
from msshop.contracts.shop import Replayed
from msshop.instruments.client import ShopClient
from msshop.runtime.orchestrator import lifecycle


def replay(settings: Settings, service: str) -> Replayed:
    lifecycle.check_service(service)
    if service != "query":
        raise UsageError(f"{service} has no read model to rebuild; only query has: "
                         "msshop replay query")
    return ShopClient(lifecycle.running_state(settings)).replay()
