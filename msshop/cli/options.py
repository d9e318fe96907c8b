"""Options more than one command takes, declared once: `--json`, `--view`, `--strategy`,
and the words naming a service."""

from __future__ import annotations

from typing import Any

import typer

from msshop.contracts.errors import UsageError
from msshop.contracts.strategies import ReadStrategy

SERVICE_HELP = "bus, users, products, orders or query (a nats cluster: also bus-2, bus-3)"
VIEWS = ("both", "tree", "timeline")
STRATEGY_NAMES = ", ".join(ReadStrategy)


def json_option(what: str = "Print the result as JSON (docs/cli.md shows its shape).") -> Any:
    """`--json`: every command that has it takes it this way; `what` says what it prints."""
    return typer.Option(False, "--json", help=what)


def view_option(what: str = "The trace as a call tree, a timeline, or both.") -> Any:
    return typer.Option("both", "--view", metavar="both|tree|timeline", help=what)


def check_view(view: str) -> None:
    if view not in VIEWS:
        raise UsageError(f"--view {view!r} is not one of: {', '.join(VIEWS)}")


def read_strategy(name: str) -> ReadStrategy:
    """`query --strategy`: one of ReadStrategy's names, checked as the flag is parsed."""
    try:
        return ReadStrategy(name)
    except ValueError:
        raise UsageError(f"unknown strategy {name!r}; choose one of: {STRATEGY_NAMES}") \
            from None


def read_strategy_filter(name: str) -> ReadStrategy:
    """`traces --strategy`: the same names, said as a filter's mistake is."""
    try:
        return ReadStrategy(name)
    except ValueError:
        raise UsageError(f"--strategy {name!r} is not one of: {STRATEGY_NAMES}") from None
