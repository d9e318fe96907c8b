"""The nemesis: applies a scenario's faults to a running sandbox and heals them. Each call
blocks until the fault has taken hold (a kill reported, a restart healthy), so the times
the runner records are when the fault was really there.

A program of your own run as a service takes them too: the process faults by signals to
its whole process group (a program may have children), the faults on its links at the
doors of the services it calls, the delivery faults (duplicates, reorder, late
redelivery) by the bus for it as a reader (chaos.set_link).
The requests it answers take none: it serves no /chaos, and that is said before the run.
"""

from __future__ import annotations

import signal
from typing import Any, cast

from msshop.contracts.config import Settings
from msshop.contracts.errors import UsageError
from msshop.contracts.kinds import Kind
from msshop.contracts.status import CrashedWhileApplying, LinkFault, link_fault
from msshop.instruments.chaos import crash_while_applying, no_door, set_link
from msshop.instruments.client import ShopClient
from msshop.instruments.experiments.scenario import Fault
from msshop.runtime.orchestrator import lifecycle
from msshop.runtime.orchestrator.signals import signal_group


class Nemesis:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.crashes: list[CrashedWhileApplying] = []  # each crash-applying, where it hit

    def check(self, fault: Fault) -> None:
        """Refuse, before the run, a fault this sandbox cannot take."""
        state = lifecycle.running_state(self.settings)
        if fault.link is None and fault.target == "bus" and state.bus.external:
            raise UsageError(f"{fault.kind} bus: the bus is a server msshop did not start "
                             "(bus.url); this experiment needs the sandbox's own bus")
        if fault.link is None and fault.kind in ("latency", "errors") and \
                state.services[fault.target].kind != Kind.SERVICE:
            raise UsageError(f"{fault.kind} {fault.target}: only msshop's services take "
                             "chaos; put it on a link instead, e.g. \"query->bus\"")
        if fault.link is not None and fault.link[0] in state.services and \
                state.services[fault.link[0]].kind == Kind.EXECUTABLE:
            why = no_door(state, *fault.link)
            if why is not None:
                raise UsageError(f"{fault.kind} {fault.target}: {why}")

    def what_it_hit(self, fault: Fault) -> str | None:
        """What a fault that lands somewhere in particular hit, in words (crash-applying:
        where the consumer was when it was killed); None for the others."""
        if fault.kind != "crash-applying":
            return None
        crash = next((c for c in reversed(self.crashes) if c["service"] == fault.target),
                     None)
        if crash is None:
            return None
        tries = f"backlog {crash['attempts']}"
        if crash["while_applying"]:
            return (f"killed at position {crash['position']:,} while applying "
                    f"{crash['start'] + 1:,} to {crash['head']:,} ({tries})")
        return (f"killed at position {crash['position']:,}, not mid-backlog "
                f"{crash['start'] + 1:,} to {crash['head']:,} ({tries})")

    def apply(self, fault: Fault) -> None:
        if fault.link is not None:
            self._chaos(fault, heal=False)
        elif fault.kind == "kill":
            lifecycle.kill(self.settings, fault.target)
        elif fault.kind == "crash-applying":
            self.crashes.append(crash_while_applying(self.settings, fault.target))
        elif fault.kind == "stop":
            lifecycle.command(self.settings, "stop", fault.target)
        elif fault.kind == "pause":
            self._signal(fault.target, signal.SIGSTOP)
        else:
            self._chaos(fault, heal=False)

    def heal(self, fault: Fault) -> None:
        if fault.link is not None:
            self._chaos(fault, heal=True)
        elif fault.kind in ("kill", "crash-applying", "stop"):
            lifecycle.start(self.settings, fault.target)
        elif fault.kind == "pause":
            self._signal(fault.target, signal.SIGCONT)
        else:
            self._chaos(fault, heal=True)

    def _signal(self, target: str, signum: signal.Signals) -> None:
        pid = lifecycle.running_state(self.settings).services[target].pid
        if pid is not None:
            signal_group(pid, signum)

    def _chaos(self, fault: Fault, heal: bool) -> None:
        state = lifecycle.running_state(self.settings)
        if fault.link is not None:
            link: LinkFault | None = None if heal else {
                "latency": link_fault(latency_ms=fault.ms),
                "errors": link_fault(error_rate=fault.rate),
                "partition": link_fault(error_rate=1.0),
                "duplicates": link_fault(duplicate_rate=fault.rate),
                "reorder": link_fault(reorder_rate=fault.rate),
                "redelivery": link_fault(redeliver_rate=fault.rate)}[fault.kind]
            set_link(state, *fault.link, link)
            return
        faults: dict[str, Any] | None = None
        if not heal:
            faults = {"latency": {"latency_ms": fault.ms},
                      "errors": {"error_rate": fault.rate}}[fault.kind]
        client = ShopClient(state, timeout=5)
        try:
            client.chaos(fault.target, cast(Any, faults))
        finally:
            client.close()
