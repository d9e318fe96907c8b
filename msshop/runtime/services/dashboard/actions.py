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

and with `to`, another service:

    partition every call of it to `to` fails (`msshop chaos NAME --to TO --error-rate 1`)
    mend      that link's faults cleared (`msshop chaos NAME --to TO --clear`)
    trespass  it tries to open `to`'s database file, and is refused (`msshop trespass`)

The dashboard itself is no target (it would cut the request that asked), nor the bus's door.
Every effect shows where the CLI's would: `msshop status`, and the next look on the page.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from msshop.contracts.credentials import bearer
from msshop.contracts.topology import BY_NAME, NAMES
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
LINKED: dict[str, dict[str, Any]] = {  # on the part's calls to `to` (a link)
    "partition": {"error_rate": 1.0},
    "mend": {"clear": True},
}
TRESPASS = "trespass"
ACTIONS = (*SUPERVISED, *FAULTS, *LINKED, TRESPASS)
CONTROL_TIMEOUT = 30.0  # a start waits for the part to be healthy


class Actions:
    def __init__(self, peers: dict[str, str], owner: str | None, control_port: int | None
                 ) -> None:
        self._peers = peers
        self._owner = owner
        self._control_port = control_port
        self._client = Client()
        self._scenarios: list[dict[str, Any]] | None = None

    async def act(self, part: str, action: str, to: str | None = None) -> str:
        """Do `action` to `part` (with `to`: to its link to that service, or trespassing
        into that service's file); what was done, one line (Refused: why not)."""
        if part not in NAMES or part not in self._peers:
            raise Refused(422, f"{part!r} is not a part of this shop; choose one of: "
                               + ", ".join(n for n in NAMES if n in self._peers))
        if action not in ACTIONS:
            raise Refused(422, f"{action!r} is not an action; choose one of: "
                               + ", ".join(ACTIONS))
        if self._owner is None or self._control_port is None:
            raise Refused(503, "this dashboard was started without its owner's capability")
        if (action in LINKED or action == TRESPASS) != (to is not None):
            raise Refused(422, f"{action} takes {'a' if to is None else 'no'} `to`: "
                               + ("the other service" if to is None else "only "
                                  + ", ".join((*LINKED, TRESPASS)) + " do"))
        if to is not None:
            return await self._towards(part, action, to)
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

    async def scenarios(self) -> list[dict[str, Any]]:
        """The scenarios the supervisor can run (experiment_jobs.py), once asked."""
        if self._scenarios is None:
            if self._owner is None or self._control_port is None:
                return []
            try:
                said = await asyncio.to_thread(control_client.call, self._control_port,
                                               self._owner, "scenarios", CONTROL_TIMEOUT)
            except Exception as exc:
                raise Refused(503, "the sandbox's supervisor did not list the scenarios: "
                                   f"{getattr(exc, 'message', exc)}") from None
            self._scenarios = list(said.get("scenarios") or [])
        return self._scenarios

    async def experiment(self, scenario: str, seconds: float | None) -> str:
        """Ask the supervisor to run `scenario` on this sandbox (experiment_jobs.py)."""
        if self._owner is None or self._control_port is None:
            raise Refused(503, "this dashboard was started without its owner's capability")
        try:
            started = await asyncio.to_thread(
                control_client.call, self._control_port, self._owner, "experiment",
                CONTROL_TIMEOUT, scenario=scenario, seconds=seconds)
        except Exception as exc:
            raise Refused(409, f"experiment {scenario}: {getattr(exc, 'message', exc)}"
                          ) from None
        return f"experiment {started['id']} started"

    async def _towards(self, part: str, action: str, to: str) -> str:
        if to not in NAMES or to not in self._peers or to == part:
            raise Refused(422, f"{to!r}: name another service of this shop")
        if action == TRESPASS:
            answer = await self._post(part, "/chaos/trespass", {"into": to})
            refused = answer.get("refused") or "it was let in"
            return f"{part} tried to open {to}'s file: {refused}"
        if not BY_NAME[part].calls_others:
            raise Refused(422, f"{part} calls no other service: partition its caller's link")
        await self._post(part, "/chaos", {"to": to, **LINKED[action]})
        return (f"every call from {part} to {to} fails" if action == "partition"
                else f"the link from {part} to {to} mended")

    async def _fault(self, part: str, action: str) -> str:
        await self._post(part, "/chaos", FAULTS[action])
        return {"slow": f"{part} answers 300 ms late", "failing": f"half of {part}'s answers "
                "fail", "heal": f"{part}'s faults cleared"}[action]

    async def _post(self, part: str, path: str, asked: dict[str, Any]) -> dict[str, Any]:
        """POST `asked` to the part with the owner's token; its JSON answer."""
        assert self._owner is not None
        host, port = address_of(self._peers[part])
        try:
            async with asyncio.timeout(5):
                status, answer = await self._client.request(
                    "POST", host, port, path, json.dumps(asked).encode(),
                    {"content-type": "application/json", **bearer(self._owner)})
        except (ConnectFailed, OSError, TimeoutError):
            raise Refused(409, f"{part} did not answer: start it first") from None
        try:
            said = json.loads(answer)
        except ValueError:
            said = None
        if status != 200 or not isinstance(said, dict):
            error = (said.get("error") if isinstance(said, dict)
                     else answer[:200].decode(errors="replace"))
            raise Refused(502, f"{part} refused ({status}): {error}")
        return said

    def close(self) -> None:
        self._client.close()
