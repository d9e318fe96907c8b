"""The supervisor's preload: the stack imported once, stage by stage, aiohttp without TLS.

Each check runs in a fresh interpreter: importing is what is being tested."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from msshop.runtime.orchestrator.process import preload
from msshop.contracts.topology import BY_NAME, SERVICES

preload([BY_NAME["bus"]])
assert "aiohttp" not in sys.modules, "the bus starts before aiohttp is imported"
assert "msshop.runtime.services.bus" in sys.modules
assert "msshop.runtime.services.orders" not in sys.modules

preload(SERVICES)
import aiohttp.connector
import ssl

assert aiohttp.connector.ssl is None, "aiohttp was imported without building TLS contexts"
assert sys.modules["ssl"] is ssl and ssl.create_default_context(), "ssl works for the rest"
import http.client
assert hasattr(http.client, "HTTPSConnection")
print("ok")
"""


def test_preload_imports_by_stage_and_aiohttp_without_tls() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
