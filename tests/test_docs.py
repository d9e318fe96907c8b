"""The docs describe what exists: every command has a section in docs/cli.md with an
example that parses, and the README's quick start is two lines."""

from __future__ import annotations

import re
import shlex
from typing import Any

import typer.main

from msshop.cli import app
from tests.conftest import ROOT

CLI_DOC = (ROOT / "docs" / "cli.md").read_text()


def group() -> Any:
    """The click group behind the typer app (typer may vendor its own click)."""
    command = typer.main.get_command(app)
    assert hasattr(command, "commands")
    return command


def commands() -> dict[str, Any]:
    return dict(group().commands)


def examples() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", CLI_DOC, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("msshop")]


def test_every_command_has_a_section_and_an_example() -> None:
    sections = re.findall(r"^## msshop (\S+)$", CLI_DOC, flags=re.M)
    assert sorted(sections) == sorted(commands())
    exemplified = {shlex.split(line)[1] for line in examples()}
    assert exemplified == set(commands())


def test_every_example_parses() -> None:
    for line in examples():
        name, *rest = shlex.split(line)[1:]
        command = commands()[name]
        command.make_context(name, rest)  # raises on an unknown option or a bad value


def test_every_command_help_has_an_example() -> None:
    for name, command in commands().items():
        assert f"Example: msshop {name}" in (command.help or ""), name


def test_readme_quick_start_is_two_lines() -> None:
    readme = (ROOT / "README.md").read_text()
    demo = re.search(r"<!-- quickstart:demo -->\n```bash\n(.*?)\n```", readme, flags=re.S)
    test = re.search(r"<!-- quickstart:test -->\n```bash\n(.*?)\n```", readme, flags=re.S)
    assert demo and test
    assert "\n" not in demo.group(1) and demo.group(1).endswith("msshop demo")
    assert "\n" not in test.group(1) and test.group(1).endswith("pytest")


def sections() -> dict[str, str]:
    """Each `## msshop NAME` section of docs/cli.md, by command."""
    parts = re.split(r"^## msshop (\S+)\n", CLI_DOC, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


GLOBAL_OPTIONS = {"--sandbox", "--base-port", "--config", "--help"}


def test_every_option_in_help_is_documented_and_every_documented_option_exists() -> None:
    documented = sections()
    for name, command in commands().items():
        options = {opt for param in command.params for opt in param.opts
                   if opt.startswith("--")} - {"--help"}
        section = documented[name]
        mentioned = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", section))
        missing = {opt for opt in options if opt not in mentioned}
        assert not missing, f"msshop {name}: {sorted(missing)} in --help, not in docs/cli.md"
        unknown = mentioned - options - GLOBAL_OPTIONS
        # another command's flags may be named where this one points to it ("see ...")
        foreign = {opt for opt in unknown
                   if not any(opt in {o for p in other.params for o in p.opts}
                              for other in commands().values())}
        assert not foreign, f"msshop {name}: docs/cli.md names {sorted(foreign)}, which no " \
                            "command has"
