"""Experiments asked for from the dashboard (issue 28), run by the supervisor as a job of its
own: `msshop experiment NAME --sandbox <this sandbox>`, a separate process, as a person would
run it in a terminal. The dashboard's process cannot run one itself: the runtime never
imports the instruments, and its kernel rule lets it write nothing but its own directory.

One at a time (two would fault the same services at once). Each run's files go in the
dashboard's directory, so that its process may read them:

    data/ui/experiments/<id>/   (id: its start, UTC, then the scenario's name)
        progress.jsonl   what it says and each second's tallies (--progress)
        report/          index.html and report.json (--report), once it has ended well
        run.log          its stderr: why it failed, if it did
        ended            its exit code, written when the supervisor has reaped it

A run still going when the sandbox stops is ended with it (SIGTERM, then SIGKILL): its
faults end with the services they were in. If the supervisor itself dies (SIGKILL), the
kernel ends the run as it ends the services (PR_SET_PDEATHSIG), so that no experiment
goes on faulting a sandbox that is no more.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from msshop.contracts.errors import SandboxError
from msshop.contracts.shipped import toml_files
from msshop.runtime.orchestrator.process import PR_SET_PDEATHSIG

RUNS = "experiments"  # the folder of runs, in the dashboard's directory
PLAIN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # a scenario's name (scenario.py's rule)
SECONDS = (3.0, 600.0)  # what a run may be squeezed or stretched to
STOP_WAIT = 2.0  # seconds a run has to end when the sandbox stops


def die_with_the_supervisor(supervisor: int) -> Callable[[], None]:
    """In the child, before exec: SIGTERM when the supervisor dies (Linux), and at once if
    it already has. The supervisor has one thread, so the fork holds no lock to trip on."""
    def arrange() -> None:
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != supervisor:
            os._exit(1)

    return arrange


def run_dir(ui_dir: Path, run_id: str) -> Path:
    return ui_dir / RUNS / run_id


def scenarios() -> list[dict[str, Any]]:
    """The scenarios msshop ships (configs/experiments), in name order, as the page offers
    them: read here, since the dashboard's kernel rule may not let it read them (from a
    checkout they are beside the package)."""
    found = []
    for name, item in sorted(toml_files("experiments").items()):
        with contextlib.suppress(OSError, tomllib.TOMLDecodeError):
            data = tomllib.loads(item.read_text())
            found.append({"name": name, "title": str(data.get("title", name)),
                          "workload": str(data.get("workload", "reads")),
                          "seconds": float(data.get("seconds", 0))})
    return found


class ExperimentJobs:
    """The one run in flight, if any."""

    def __init__(self, sandbox_dir: Path, python: str = sys.executable,
                 popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.sandbox_dir = sandbox_dir
        self.python = python
        self.popen = popen
        self.now = now
        self.running: tuple[str, subprocess.Popen[bytes], Path] | None = None

    def start(self, ui_dir: Path, scenario: Any, seconds: Any) -> dict[str, Any]:
        """Start `scenario` (squeezed to `seconds`, None: its own length); its id."""
        if not isinstance(scenario, str) or not PLAIN.fullmatch(scenario):
            raise SandboxError(f"{scenario!r} is not a scenario's name: letters, digits, - "
                               "and _; see msshop experiment --help")
        low, high = SECONDS
        if seconds is not None and (not isinstance(seconds, int | float)
                                    or isinstance(seconds, bool)
                                    or not low <= seconds <= high):
            raise SandboxError(f"seconds must be from {low:g} to {high:g}, not {seconds!r}")
        if self.running is not None:
            raise SandboxError(f"the experiment {self.running[0]} is running: one at a time "
                               "(its faults would meet another's)")
        run_id = f"{self.now():%Y%m%dT%H%M%SZ}-{scenario}"
        directory = run_dir(ui_dir, run_id)
        try:
            directory.mkdir(parents=True)
            log = (directory / "run.log").open("ab")
        except OSError as exc:
            raise SandboxError(f"cannot make the run's folder {directory}: "
                               f"{exc.strerror or exc}") from None
        argv = [self.python, "-m", "msshop", "experiment", scenario,
                "--sandbox", str(self.sandbox_dir), "--report", str(directory / "report"),
                "--progress", str(directory / "progress.jsonl")]
        if seconds is not None:
            argv += ["--seconds", f"{seconds:g}"]
        with log:
            try:
                process = self.popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=log,
                                     start_new_session=True,
                                     preexec_fn=die_with_the_supervisor(os.getpid()))
            except OSError as exc:  # its folder goes too: no run listed that never ran
                shutil.rmtree(directory, ignore_errors=True)
                raise SandboxError(f"cannot start the experiment: {exc}") from None
        self.running = (run_id, process, directory)
        return {"ok": True, "id": run_id, "pid": process.pid}

    def reap(self) -> str | None:
        """The run that has just ended, if one has (its `ended` file written)."""
        if self.running is None:
            return None
        run_id, process, directory = self.running
        code = process.poll()
        if code is None:
            return None
        self.running = None
        with contextlib.suppress(OSError):
            (directory / "ended").write_text(f"{code}\n")
        return run_id

    def stop(self) -> None:
        """The sandbox stops: so does the run."""
        if self.running is None:
            return
        _, process, _ = self.running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.reap()
