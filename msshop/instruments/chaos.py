"""Commands that disturb a running sandbox on purpose: `msshop chaos` (latency, jitter,
failures, and clearing them) and `msshop replay` (rebuild a read model). The services
check the sandbox's token, which only the sandbox's owner can read."""

from __future__ import annotations

from typing import Any

from msshop.contracts.config import Settings
from msshop.contracts.errors import ServiceError, UsageError
from msshop.instruments.client import ShopClient
from msshop.runtime.orchestrator import lifecycle


def inject(settings: Settings, service: str, latency_ms: float, jitter_ms: float,
           error_rate: float, clear: bool) -> dict[str, Any]:
    lifecycle.check_service(service)
    if clear and (latency_ms or jitter_ms or error_rate):
        raise UsageError("--clear removes every fault; give it alone")
    if not clear and not (latency_ms or jitter_ms or error_rate):
        raise UsageError("say what to inject: --latency MS, --jitter MS or --error-rate P "
                         "(or --clear)")
    state = lifecycle.running_state(settings)
    body = {"clear": True} if clear else {"latency_ms": latency_ms, "jitter_ms": jitter_ms,
                                          "error_rate": error_rate}
    status, answer = ShopClient(state).exchange(
        service, "POST", "/chaos", body, headers={"authorization": f"Bearer {state.token}"})
    if status != 200:
        raise ServiceError(answer.get("error", f"{service} answered HTTP {status}"), status)
    result: dict[str, Any] = answer
    return result


def replay(settings: Settings, service: str) -> dict[str, Any]:
    lifecycle.check_service(service)
    if service != "query":
        raise UsageError(f"{service} has no read model to rebuild; only query has: "
                         "msshop replay query")
    state = lifecycle.running_state(settings)
    status, answer = ShopClient(state, timeout=600).exchange(
        "query", "POST", "/replay", headers={"authorization": f"Bearer {state.token}"})
    if status != 200:
        raise ServiceError(answer.get("error", f"query answered HTTP {status}"), status)
    result: dict[str, Any] = answer
    return result
