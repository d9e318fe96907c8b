"""`msshop demo [NAME]`: scripted demos for a terminal, defined as data (configs/demos/*.toml,
shipped in the package as msshop.configs.demos).

Each step prints a short narration and the exact command, runs that command as a person
would (a real `msshop` process, in a sandbox of its own in a temporary directory, on free
ports), shows its output and checks the line the step expects. Between steps it waits for
Enter, or, with --no-pause, a moment scaled by --speed. However it ends (done, a step that
went wrong, Ctrl-C), the sandbox is stopped and its directory removed.

A step in TOML:  say = "...", run = "msshop ...", expect = "a line to see",
                 fails = true (the command is meant to fail),
                 capture = { name = "position", pattern = 'bus position (\\d+)' }
                 (later steps may use {position} in `run`),
                 during = "msshop seed ..." (started first, and still running while `run`
                 runs: a fault under load; both must succeed, `expect` is looked for in
                 both outputs), during_fails = true (the `during` command is meant to
                 fail: a purchase in flight when `run` kills its service).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from msshop.contracts.errors import InvalidArgument, MsshopError, UsageError
from msshop.contracts.shipped import toml_files

DEFAULT = "lesson"
PAUSE_SECONDS = 1.0  # between steps with --no-pause, divided by --speed
STEP_TIMEOUT = 300
HEAD_START = 0.5  # seconds a step's `during` command runs before the step's own command


@dataclass(frozen=True)
class Step:
    say: str
    run: str
    expect: str | None = None
    fails: bool = False
    capture: dict[str, str] | None = None
    during: str | None = None
    during_fails: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    summary: str
    steps: tuple[Step, ...] = field(default_factory=tuple)


def available() -> dict[str, Any]:
    """Demo files by name (configs/demos, shipped in the package)."""
    return toml_files("demos")


def load(name: str) -> Scenario:
    files = available()
    if name not in files:
        raise UsageError(f"no demo named '{name}'; choose one of: " + ", ".join(sorted(files)))
    try:
        data = tomllib.loads(files[name].read_text(encoding="utf-8"))
        steps = tuple(Step(**step) for step in data["steps"])
        return Scenario(data["name"], data["title"], data["summary"].strip(), steps)
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise MsshopError(f"demo '{name}' is malformed: {exc}") from None


class StepFailed(MsshopError):
    pass


class Stage(Protocol):
    """Where a demo is shown (render.DemoStage draws it on a terminal)."""

    width: int  # columns the commands' output may use
    colour: bool  # whether the commands may print colours

    def title(self, title: str, summary: str, sandbox: Path) -> None: ...

    def step(self, narration: str, command: str) -> None: ...

    def output(self, text: str) -> None:
        """A command's output exactly as it printed it."""

    def wait(self) -> None:
        """Until the presenter asks for the next step."""


def run(name: str, pause: bool, speed: float, stage: Stage,
        commands: Mapping[str, Sequence[str]] | None = None) -> int:
    """Run a demo on `stage`; returns how many steps ran (`pause`: wait for the presenter
    between steps). Raises StepFailed on a step that went wrong. `commands`: programs of
    your own to run as those services (services.<name>.command), in every step."""
    if speed <= 0:
        raise InvalidArgument(f"{{speed}} {speed:g} must be more than 0", "speed")
    scenario = load(name)
    root = Path(tempfile.mkdtemp(prefix=f"msshop-demo-{name}-"))
    env = child_environment(root, stage.width, stage.colour, commands or {})
    stage.title(scenario.title, scenario.summary, root / "sandbox")
    captured: dict[str, str] = {}
    started_sandbox = False
    done = 0
    try:
        for number, step in enumerate(scenario.steps, start=1):
            command = step.run.format(**captured)
            during = step.during.format(**captured) if step.during else None
            stage.step(f"{number}. {step.say}",
                       f"{during} &\n{command}" if during else command)
            args = msshop_args(name, number, command)
            meanwhile = None
            if during is not None:
                meanwhile = subprocess.Popen(
                    [sys.executable, "-m", "msshop", *msshop_args(name, number, during)],
                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                time.sleep(HEAD_START)
            result = subprocess.run([sys.executable, "-m", "msshop", *args], env=env,
                                    capture_output=True, text=True, timeout=STEP_TIMEOUT)
            started_sandbox = started_sandbox or args[:1] == ["up"]
            output = result.stdout + result.stderr
            stage.output(output)
            code = result.returncode
            if meanwhile is not None:
                later, _ = meanwhile.communicate(timeout=STEP_TIMEOUT)
                stage.output(later)
                output += later
                if step.during_fails and meanwhile.returncode == 0:
                    raise StepFailed(f"step {number}'s `during` command was meant to fail, "
                                     "and did not")
                if meanwhile.returncode != 0 and not (step.fails or step.during_fails):
                    raise StepFailed(f"step {number}'s `during` command failed (exit "
                                     f"{meanwhile.returncode}); its output is above")
            check(step, number, code, output)
            if step.capture:
                found = re.search(step.capture["pattern"], output)
                if found is None:
                    raise StepFailed(f"step {number} did not print what it should: no match for "
                                     f"{step.capture['pattern']!r}")
                captured[step.capture["name"]] = found.group(1)
            done = number
            if number < len(scenario.steps):
                if pause:
                    stage.wait()
                else:
                    time.sleep(PAUSE_SECONDS / speed)
    finally:
        if started_sandbox:  # whatever happened: nothing left running, nothing left behind
            subprocess.run([sys.executable, "-m", "msshop", "down"], env=env,
                           capture_output=True, timeout=STEP_TIMEOUT)
        shutil.rmtree(root, ignore_errors=True)
    return done


def msshop_args(name: str, number: int, command: str) -> list[str]:
    """The arguments of a step's `msshop …` command (a demo runs nothing else)."""
    args = shlex.split(command)
    if not args or args[0] != "msshop":
        raise StepFailed(f"demo '{name}' step {number} does not run msshop: {command}")
    return args[1:]


def check(step: Step, number: int, code: int, output: str) -> None:
    if step.fails and code == 0:
        raise StepFailed(f"step {number} was meant to fail, and did not")
    if not step.fails and code != 0:
        raise StepFailed(f"step {number} failed (exit {code}); its output is above")
    if step.expect and step.expect not in output:
        raise StepFailed(f"step {number} did not print {step.expect!r}")


def child_environment(root: Path, width: int, colour: bool,
                      commands: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The commands run in the demo's own sandbox, at the demo's width and colours, with
    the programs of your own it runs as services (none: msshop's own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSSHOP_")}
    env.update(MSSHOP_SANDBOX=str(root / "sandbox"), MSSHOP_BASE_PORT="0",
               COLUMNS=str(width))
    for service, command in commands.items():
        env[f"MSSHOP_{service.upper()}_COMMAND"] = shlex.join(command)
    if colour:
        env["FORCE_COLOR"] = "1"  # the commands' output is captured, not a terminal
    else:
        env.pop("FORCE_COLOR", None)
        env["NO_COLOR"] = "1"
    return env
