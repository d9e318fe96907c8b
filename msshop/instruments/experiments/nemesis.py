"""The nemesis: applies a scenario's faults to a running sandbox and heals them. Each call
blocks until the fault has taken hold (a kill reported, a restart healthy), so the times
the runner records are when the fault was really there."""

from __future__ import annotations

import os
import signal
from typing import Any, cast

from msshop.contracts.config import Settings
from msshop.contracts.errors import UsageError
from msshop.instruments.client import ShopClient
from msshop.instruments.experiments.scenario import Fault
from msshop.runtime.orchestrator import lifecycle


class Nemesis:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def check(self, fault: Fault) -> None:
        """Refuse, before the run, a fault this sandbox cannot take."""
        state = lifecycle.running_state(self.settings)
        if fault.link is None and fault.target == "bus" and state.bus.external:
            raise UsageError(f"{fault.kind} bus: the bus is a server msshop did not start "
                             "(bus.url); this experiment needs the sandbox's own bus")
        if fault.link is None and fault.kind in ("latency", "errors") and \
                state.services[fault.target].kind != "service":
            raise UsageError(f"{fault.kind} {fault.target}: only msshop's services take "
                             "chaos; put it on a link instead, e.g. \"query->bus\"")

    def apply(self, fault: Fault) -> None:
        if fault.link is not None:
            self._chaos(fault, heal=False)
        elif fault.kind == "kill":
            lifecycle.kill(self.settings, fault.target)
        elif fault.kind == "stop":
            lifecycle.command(self.settings, "stop", fault.target)
        elif fault.kind == "pause":
            self._signal(fault.target, signal.SIGSTOP)
        else:
            self._chaos(fault, heal=False)

    def heal(self, fault: Fault) -> None:
        if fault.link is not None:
            self._chaos(fault, heal=True)
        elif fault.kind in ("kill", "stop"):
            lifecycle.start(self.settings, fault.target)
        elif fault.kind == "pause":
            self._signal(fault.target, signal.SIGCONT)
        else:
            self._chaos(fault, heal=True)

    def _signal(self, target: str, signum: signal.Signals) -> None:
        pid = lifecycle.running_state(self.settings).services[target].pid
        if pid is not None:
            os.kill(pid, signum)

    def _chaos(self, fault: Fault, heal: bool) -> None:
        state = lifecycle.running_state(self.settings)
        caller, callee = fault.link or (fault.target, None)
        faults: dict[str, Any] | None = None
        if not heal:
            faults = {"latency": {"latency_ms": fault.ms},
                      "errors": {"error_rate": fault.rate},
                      "partition": {"error_rate": 1.0},
                      "duplicates": {"duplicate_rate": fault.rate}}[fault.kind]
        client = ShopClient(state, timeout=5)
        try:
            client.chaos(caller, cast(Any, faults), to=callee)
        finally:
            client.close()
