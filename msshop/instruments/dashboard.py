"""`msshop ui`: where the running sandbox's dashboard answers, and its login (issue 28).

The login token is made here from the owner's token (the state file, 0600) as the
dashboard makes it from its own credential: credentials.dashboard_login of the
dashboard's credential and its pid. Nothing is asked of the dashboard, and the token is
written nowhere but the terminal.
"""

from __future__ import annotations

from msshop.contracts.credentials import dashboard_login, service_credential
from msshop.contracts.errors import SandboxError
from msshop.contracts.outcomes import DashboardAddress
from msshop.contracts.topology import DASHBOARD
from msshop.runtime.orchestrator.state import State


def address(state: State) -> DashboardAddress:
    ui = state.services.get(DASHBOARD.name)
    if ui is None:
        raise SandboxError("this sandbox runs without its dashboard; start the sandbox with "
                           "it: msshop down, then msshop up --detach --ui (or ui.enabled in "
                           "the settings, MSSHOP_UI=1)")
    if ui.status != "running" or ui.pid is None:
        raise SandboxError(f"the dashboard is {ui.status}; start it with: msshop start ui")
    token = dashboard_login(service_credential(state.token, DASHBOARD.name), ui.pid)
    return {"url": f"{ui.url}/", "login": f"{ui.url}/login?token={token}", "pid": ui.pid}
