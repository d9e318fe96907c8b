"""`msshop ui` (instruments/dashboard.py) against the supervisor of a sandbox started by an
older msshop, whose control socket does not know `add`: one line naming the fix.

That supervisor cannot be started from this code, so it is played by the real control
socket (control.py's ControlServer, a real listening socket, driven by the test as the
supervisor drives it) answering as every supervisor answers a command it does not know;
the sandbox's lock is held and its state file written as a running sandbox's are.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from msshop.contracts.config import Settings, defaults
from msshop.contracts.errors import SandboxError
from msshop.instruments import dashboard
from msshop.runtime.orchestrator.state import (
    SandboxPaths,
    ServiceState,
    State,
    SupervisorLock,
    write_state,
)
from tests.unit.test_control import TOKEN, Loop


def older_supervisor(request: dict[str, Any]) -> dict[str, Any]:
    """handle() of a supervisor made before `add`: its answer to an op it does not know."""
    return {"ok": False, "error": f"unknown command {request['op']!r}"}


def test_a_supervisor_without_add_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    settings = Settings.from_values({**defaults(), "sandbox.dir": tmp_path / "sandbox"})
    paths = SandboxPaths(settings.sandbox_dir)
    paths.create()
    lock = SupervisorLock(paths)
    assert lock.acquire()
    loop = Loop(handle=older_supervisor)
    try:
        write_state(paths, State(sandbox=str(paths.root), host="127.0.0.1",
                                 supervisor_pid=1, control_port=loop.server.port,
                                 token=TOKEN, mode="detached", started_at=time.time()))
        said: list[BaseException] = []

        def ask() -> None:
            try:
                dashboard.served(settings)
            except BaseException as exc:
                said.append(exc)

        asking = threading.Thread(target=ask)
        asking.start()
        loop.run_until(lambda: not asking.is_alive())
        asking.join()
    finally:
        loop.close()
        lock.release()
    assert [request["op"] for request in loop.requests] == ["add"]
    assert len(said) == 1 and isinstance(said[0], SandboxError)
    message = said[0].message
    assert "\n" not in message
    assert message == ("this sandbox's supervisor is older than this msshop and cannot add "
                       "its dashboard; start the sandbox with it: msshop down, then msshop "
                       "up --detach --ui")


def test_a_dashboard_that_runs_is_asked_nothing(tmp_path: Path) -> None:
    """Running: its address at once, no command sent (a closed control port would fail)."""
    settings = Settings.from_values({**defaults(), "sandbox.dir": tmp_path / "sandbox"})
    paths = SandboxPaths(settings.sandbox_dir)
    paths.create()
    lock = SupervisorLock(paths)
    assert lock.acquire()
    try:
        ui = ServiceState(name="ui", port=7108, url="http://127.0.0.1:7108", db="", log="",
                          status="running", pid=4242)
        write_state(paths, State(sandbox=str(paths.root), host="127.0.0.1",
                                 supervisor_pid=1, control_port=1, token=TOKEN,
                                 mode="detached", started_at=0.0, services={"ui": ui}))
        address = dashboard.served(settings)
    finally:
        lock.release()
    assert address["pid"] == 4242 and address["url"] == "http://127.0.0.1:7108/"
    assert address["login"].startswith("http://127.0.0.1:7108/login?token=")

