"""The client's one line for a service it cannot reach says what fits the state: a process
that runs but does not answer is to be looked at (or restarted), a stopped one started."""

from __future__ import annotations

import socket

import pytest

from msshop.contracts.errors import SandboxError
from msshop.instruments.client import ShopClient
from msshop.runtime.orchestrator.state import ServiceState, State


def refusing_port() -> int:
    """A port nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def sandbox_with(status: str, port: int) -> State:
    users = ServiceState(name="users", port=port, url=f"http://127.0.0.1:{port}",
                         db="/tmp/sb/data/users/users.db", log="/tmp/sb/logs/users.log",
                         status=status, pid=4242 if status == "running" else None)
    return State(sandbox="/tmp/sb", host="127.0.0.1", supervisor_pid=1, control_port=1,
                 token="t", mode="detached", started_at=0.0, services={"users": users})


@pytest.mark.parametrize(("status", "fix"), [
    ("running", "though its process runs; see: msshop logs users, or restart it: "
                "msshop restart users"),
    ("stopped", "check with: msshop status, start it with: msshop start users"),
])
def test_a_service_that_does_not_answer_is_named_with_the_fix_its_state_calls_for(
        status: str, fix: str) -> None:
    port = refusing_port()
    client = ShopClient(sandbox_with(status, port), timeout=2.0)
    with pytest.raises(SandboxError) as raised:
        client.request("users", "GET", "/health")
    said = str(raised.value)
    assert said.startswith(f"users is not answering at http://127.0.0.1:{port} (")
    assert said.endswith(fix), said
    client.close()
