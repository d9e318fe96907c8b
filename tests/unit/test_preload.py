"""The supervisor's preload: the stack imported once, stage by stage; the bus, which calls
no one, before the peer client.

Each check runs in a fresh interpreter: importing is what is being tested."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from msshop.runtime.orchestrator.process import preload
from msshop.contracts.topology import BY_NAME, SERVICES

preload([BY_NAME["bus"]])
assert "msshop.runtime.platform.wire" not in sys.modules, "the bus starts before the client"
assert "msshop.runtime.services.bus" in sys.modules
assert "msshop.runtime.services.orders" not in sys.modules

preload(SERVICES)
assert "msshop.runtime.platform.wire" in sys.modules
assert "aiohttp" not in sys.modules, "services call each other without aiohttp"
assert "starlette.applications" not in sys.modules, "services route requests themselves"
print("ok")
"""


def test_preload_imports_by_stage_and_no_framework() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
