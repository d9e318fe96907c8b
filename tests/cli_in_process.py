"""`msshop ARGS` run inside the test's own interpreter: for commands that need no running
sandbox (--help, usage and config errors), which would otherwise pay for a new Python each.

It runs what the entry point runs (the typer app, then `fail` for a MsshopError), with
stdout, stderr and the environment exactly as `tests.conftest.msshop` gives a subprocess,
and answers the same CompletedProcess, so a test switches by changing the function it calls.
tests/e2e/test_sandbox_cli.py keeps one test of the installed `msshop` script itself.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from msshop.cli import app
from msshop.cli.app import fail
from msshop.contracts.errors import MsshopError


def msshop_in_process(*args: str, env: dict[str, str], cwd: Path | None = None,
                      check: bool = False) -> subprocess.CompletedProcess[str]:
    """As tests.conftest.msshop, without a new interpreter."""
    environment: dict[str, str | None] = {name: None for name in os.environ if name not in env}
    environment.update(env)
    with contextlib.ExitStack() as stack:
        if cwd is not None:
            stack.enter_context(contextlib.chdir(cwd))
        stdout, stderr, _ = stack.enter_context(CliRunner().isolation(env=environment))
        try:
            app(args=list(args), prog_name="msshop")
            code = 0
        except MsshopError as exc:
            try:
                fail(exc)
            except SystemExit as exit_:
                code = _code(exit_)
        except SystemExit as exit_:
            code = _code(exit_)
        sys.stdout.flush()  # print() writes through a buffer the runner reads below
        sys.stderr.flush()
        result = subprocess.CompletedProcess(["msshop", *args], code,
                                             stdout.getvalue().decode(),
                                             stderr.getvalue().decode())
    if check and result.returncode != 0:
        raise AssertionError(f"msshop {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def _code(exit_: SystemExit) -> int:
    return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
