"""`msshop new service query` writes a program msshop runs as its query service, and it
holds: verify clean against the monolith; the service.json it is given is the protocol's
ServiceFile (contracts/protocol.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import msgspec

from msshop.contracts.protocol import ServiceFile
from tests.cli_in_process import msshop_in_process
from tests.conftest import running_sandbox, sandbox_env


def test_the_python_starting_point_runs_as_the_query_service_and_verifies(tmp_path: Path
                                                                          ) -> None:
    made = json.loads(msshop_in_process(
        "new", "service", "query", "--lang", "python", str(tmp_path / "mine"), "--json",
        env=sandbox_env(tmp_path / "sandbox"), check=True).stdout)
    program = tmp_path / "mine" / made["files"][0]
    with running_sandbox(tmp_path / "sandbox",
                         MSSHOP_QUERY_COMMAND=f"{sys.executable} {program}") as sandbox:
        status = json.loads(sandbox.run("status", "--json", check=True).stdout)
        query = next(s for s in status["services"] if s["name"] == "query")
        assert query["kind"] == "executable" and query["health"] == "ok"
        given = (sandbox.root / "data" / "query" / "service.json").read_bytes()
        service_file = msgspec.json.decode(given, type=ServiceFile)
        assert service_file["service"] == "query" and service_file["protocol"] == 1
        sandbox.run("seed", "--users", "20", "--products", "5", "--orders", "80", "--wait",
                    check=True)
        verified = sandbox.run("verify", check=True)
        assert "equals the monolith join for all 20 users" in verified.stdout
