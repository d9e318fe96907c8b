"""A program started under its Landlock rule (process.py's ExecProcess, as for a program of
your own and nats-server), in a real forked and exec'd process: it runs held to its own
directory, and a rule that cannot be made fails the start with one line in its log (the
line `up` and `start` quote), never a program running unrestricted."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from msshop.runtime.orchestrator.process import ExecProcess
from msshop.runtime.platform import landlock
from msshop.runtime.platform.landlock import Confinement

pytestmark = pytest.mark.skipif(landlock.abi() < 1, reason="this kernel has no Landlock")


class Shell(ExecProcess):
    def __init__(self, script: str, log: Path, confinement: Confinement) -> None:
        super().__init__("query", log, confinement)
        self.script = script

    def program(self) -> tuple[list[str], dict[str, str] | None, str | None]:
        return ["/bin/sh", "-c", self.script], None, None


def run(process: ExecProcess) -> int:
    """Start it (a bound socket it closes, a lifeline) and wait for its exit code."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    lifeline = os.pipe()
    try:
        process.start(sock, lifeline, [])
        code = process.wait(20)
    finally:
        os.close(lifeline[0])
        os.close(lifeline[1])
    assert code is not None, "still running"
    return code


def sandbox_of(tmp_path: Path) -> tuple[Path, Path, Path]:
    sandbox = tmp_path / "sandbox"
    own, theirs = sandbox / "data" / "query", sandbox / "data" / "users"
    own.mkdir(parents=True)
    theirs.mkdir()
    (theirs / "users.db").write_text("theirs")
    return sandbox, own, theirs / "users.db"


def test_a_program_runs_held_to_its_own_directory(tmp_path: Path) -> None:
    sandbox, own, theirs = sandbox_of(tmp_path)
    log = sandbox / "logs" / "query.log"
    script = (f"echo mine > {own}/note && cat {own}/note && "
              f"(cat {theirs} || echo refused) && (echo x > {sandbox}/planted || echo kept)")
    assert run(Shell(script, log, Confinement(own, sandbox))) == 0
    said = log.read_text()
    assert "mine\n" in said and "refused\n" in said and "kept\n" in said, said
    assert "theirs" not in said and not (sandbox / "planted").exists()


def test_a_rule_that_cannot_be_made_fails_the_start_in_one_line(tmp_path: Path) -> None:
    sandbox, own, _ = sandbox_of(tmp_path)
    log = sandbox / "logs" / "query.log"
    confinement = Confinement(own, sandbox)  # its rules worked out, then the directory goes
    shutil.rmtree(own)
    started = time.monotonic()
    assert run(Shell(f"echo ran > {tmp_path}/ran", log, confinement)) == 126
    assert time.monotonic() - started < 10
    assert not (tmp_path / "ran").exists(), "never run unrestricted"
    assert log.read_text() == (
        f"query could not start: its isolation rule cannot be applied (cannot name {own} in "
        f"a Landlock rule: No such file or directory); fix that, or run without the "
        f"kernel's rule: [isolation] kernel = false or MSSHOP_KERNEL_ISOLATION=0\n")
