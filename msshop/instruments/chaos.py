"""Disturbing a running sandbox on purpose, for a class to see what happens. The services
check the sandbox's token, which only the sandbox's owner can read.

- `msshop chaos`: make a service slow or failing, or clear it;
- `msshop trespass`: make a service try to open another's database file: the isolation
  guard refuses, and says so;
- `msshop poison`: put an event on the bus that no read model can apply: the query service
  dead-letters it and goes on.
"""

from __future__ import annotations

from msshop.contracts.config import Settings
from msshop.contracts.errors import UsageError
from msshop.contracts.shop import ChaosAnswer, Trespassed
from msshop.contracts.status import ChaosState
from msshop.instruments.client import ShopClient
from msshop.runtime.orchestrator import lifecycle


def inject(settings: Settings, service: str, latency_ms: float, jitter_ms: float,
           error_rate: float, clear: bool) -> ChaosAnswer:
    state = lifecycle.running_state(settings)
    lifecycle.check_msshop_service(service, state, "take chaos (only msshop's services do)")
    if clear and (latency_ms or jitter_ms or error_rate):
        raise UsageError("--clear removes every fault; give it alone")
    if not clear and not (latency_ms or jitter_ms or error_rate):
        raise UsageError("say what to inject: --latency MS, --jitter MS or --error-rate P "
                         "(or --clear)")
    faults: ChaosState | None = None if clear else {
        "latency_ms": latency_ms, "jitter_ms": jitter_ms, "error_rate": error_rate}
    return ShopClient(state).chaos(service, faults)


def trespass(settings: Settings, service: str, into: str) -> Trespassed:
    state = lifecycle.running_state(settings)
    lifecycle.check_msshop_service(service, state, "open a database file")
    others = [n for n, s in state.services.items() if s.kind == "service" and n != service]
    if into not in others:
        raise UsageError(f"--into {into!r}: name another service whose file to try: "
                         + ", ".join(others))
    return ShopClient(state).trespass(service, into)


POISON_TYPE = "Poison"


def poison(settings: Settings, source: str = "users") -> int:
    """Append, as `source` would (with its credential, which the owner derives), an event of
    a type no read model knows; its position. The consumer dead-letters it and goes on."""
    import asyncio

    import msgspec

    from msshop.contracts import events

    state = lifecycle.running_state(settings)
    event = events.make(events.USER_SIGNED_UP, source, 0, 1, {"on purpose": True}, None)
    body = events.encode(msgspec.structs.replace(event, type=POISON_TYPE))

    async def append() -> int:
        bus = ShopClient(state).bus(as_service=source)
        try:
            return (await bus.append([body]))[0]
        finally:
            await bus.close()

    return asyncio.run(append())
