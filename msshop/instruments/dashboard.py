"""`msshop ui`: where the running sandbox's dashboard answers, and its login (issue 28).

A sandbox started without its dashboard is given it (the supervisor's `add`: ports, state,
fork, healthy, as at `up --ui`); one whose dashboard is stopped or crashed has it started
(`start`); then its address is printed as for one that ran all along.

The login token is made here from the owner's token (the state file, 0600) as the
dashboard makes it from its own credential: credentials.dashboard_login of the
dashboard's credential and its pid. Nothing is asked of the dashboard, and the token is
written nowhere but the terminal.
"""

from __future__ import annotations

from msshop.contracts.config import Settings
from msshop.contracts.credentials import dashboard_login, service_credential
from msshop.contracts.errors import SandboxError
from msshop.contracts.outcomes import DashboardAddress
from msshop.contracts.topology import DASHBOARD
from msshop.runtime import control_client
from msshop.runtime.orchestrator import lifecycle
from msshop.runtime.orchestrator.state import State

# what a supervisor older than the `add` command answers it (control.py's unknown command)
UNKNOWN_ADD = "unknown command 'add'"


def served(settings: Settings) -> DashboardAddress:
    """The running sandbox's dashboard, added or started first if it is not running."""
    state = lifecycle.running_state(settings)
    if _running(state):
        return address(state)
    op = "start" if DASHBOARD.name in state.services else "add"
    timeout = settings.startup_timeout + settings.stop_timeout + 5
    try:
        control_client.call(state.control_port, state.token, op, timeout=timeout,
                            service=DASHBOARD.name)
    except SandboxError as refused:
        if refused.message == UNKNOWN_ADD:
            raise SandboxError(
                "this sandbox's supervisor is older than this msshop and cannot add its "
                "dashboard; start the sandbox with it: msshop down, then msshop up "
                "--detach --ui") from None
        if not _running(lifecycle.running_state(settings)):  # else: started meanwhile
            raise
    return address(lifecycle.running_state(settings))


def _running(state: State) -> bool:
    ui = state.services.get(DASHBOARD.name)
    return ui is not None and ui.status == "running" and ui.pid is not None


def address(state: State) -> DashboardAddress:
    """The address and login of a dashboard that runs (`up --ui` prints them too)."""
    ui = state.services.get(DASHBOARD.name)
    if ui is None:
        raise SandboxError("this sandbox runs without its dashboard; add it with: msshop ui")
    if ui.status != "running" or ui.pid is None:
        raise SandboxError(f"the dashboard is {ui.status}; start it with: msshop start ui")
    token = dashboard_login(service_credential(state.token, DASHBOARD.name), ui.pid)
    return {"url": f"{ui.url}/", "login": f"{ui.url}/login?token={token}", "pid": ui.pid}
