"""Break it from the page (issue 28): what a button may do to a part of the shop, done as
the CLI does it, by the dashboard's process on its owner's behalf (the page never holds the
sandbox's token; the dashboard's process does, in its memory, as the CLI reads it from the
state file).

    kill      SIGKILL its process group, as `msshop kill` (a crash), by the supervisor
    stop      `msshop stop` (the supervisor's control socket)
    start     `msshop start`
    restart   `msshop restart`
    slow      every request it answers 300 ms late (`msshop chaos NAME --latency 300`)
    failing   half of them fail (`msshop chaos NAME --error-rate 0.5`)
    heal      its faults cleared (`msshop chaos NAME --clear`)

The dashboard itself is no target (it would cut the request that asked), nor the bus's door.
Every effect shows where the CLI's would: `msshop status`, and the next look on the page.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from msshop.contracts.credentials import bearer
from msshop.contracts.topology import NAMES
from msshop.runtime import control_client
from msshop.runtime.platform.wire import Client, ConnectFailed, address_of
from msshop.runtime.services.dashboard.guard import Refused

# asked of the supervisor (a kill too: the dashboard's own process may not signal another,
# under the kernel's rule: Landlock scopes signals to the process's own domain)
SUPERVISED = ("kill", "stop", "start", "restart")
FAULTS: dict[str, dict[str, Any]] = {
    "slow": {"latency_ms": 300},
    "failing": {"error_rate": 0.5},
    "heal": {"clear": True},
}
ACTIONS = (*SUPERVISED, *FAULTS)
CONTROL_TIMEOUT = 30.0  # a start waits for the part to be healthy


class Actions:
    def __init__(self, peers: dict[str, str], owner: str | None, control_port: int | None
                 ) -> None:
        self._peers = peers
        self._owner = owner
        self._control_port = control_port
        self._client = Client()

    async def act(self, part: str, action: str) -> str:
        """Do `action` to `part`; what was done, one line (Refused: why not)."""
        if part not in NAMES or part not in self._peers:
            raise Refused(422, f"{part!r} is not a part of this shop; choose one of: "
                               + ", ".join(n for n in NAMES if n in self._peers))
        if action not in ACTIONS:
            raise Refused(422, f"{action!r} is not an action; choose one of: "
                               + ", ".join(ACTIONS))
        if self._owner is None or self._control_port is None:
            raise Refused(503, "this dashboard was started without its owner's capability")
        if action in SUPERVISED:
            port, token = self._control_port, self._owner
            try:
                await asyncio.to_thread(control_client.call, port, token, action,
                                        CONTROL_TIMEOUT,
                                        service=part)
            except Exception as exc:
                raise Refused(409, f"{action} {part}: {getattr(exc, 'message', exc)}") from None
            return {"kill": f"{part} killed by SIGKILL", "stop": f"{part} stopped",
                    "start": f"{part} started", "restart": f"{part} restarted"}[action]
        return await self._fault(part, action)

    async def _fault(self, part: str, action: str) -> str:
        assert self._owner is not None
        host, port = address_of(self._peers[part])
        body = json.dumps(FAULTS[action]).encode()
        try:
            async with asyncio.timeout(5):
                status, answer = await self._client.request(
                    "POST", host, port, "/chaos", body,
                    {"content-type": "application/json", **bearer(self._owner)})
        except (ConnectFailed, OSError, TimeoutError):
            raise Refused(409, f"{part} did not answer: start it first") from None
        if status != 200:
            raise Refused(502, f"{part} refused the fault ({status}): {answer[:200]!r}")
        return {"slow": f"{part} answers 300 ms late", "failing": f"half of {part}'s answers "
                "fail", "heal": f"{part}'s faults cleared"}[action]

    def close(self) -> None:
        self._client.close()
