"""`msshop chaos`: make a running service slow or failing, or clear it. The services check
the sandbox's token, which only the sandbox's owner can read."""

from __future__ import annotations

from msshop.contracts.config import Settings
from msshop.contracts.errors import UsageError
from msshop.contracts.shop import ChaosAnswer
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
