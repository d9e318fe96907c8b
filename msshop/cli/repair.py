"""Damaged files: each service's checked whole (check), the bus's log rebuilt (repair)."""

from __future__ import annotations

import typer

from msshop.cli.app import settings
from msshop.cli.emit import Outcome, emit
from msshop.cli.options import json_option
from msshop.contracts.errors import UsageError


def check(
    ctx: typer.Context,
    service: str | None = typer.Argument(
        None, metavar="[SERVICE]",
        help="bus, users, products, orders or query [default: every one]"),
    as_json: bool = json_option(),
) -> None:
    """Check each service's database whole, read-only; name the way out of a damaged one.

    Exit 1 if one is damaged. Each service checks its own file as it starts, for at most
    0.2 s: this reads the rest of a large one.

    \b
    Example: msshop check orders
    """
    from msshop import render
    from msshop.instruments.repair import check_files

    checked = check_files(settings(ctx), service)
    emit(Outcome(checked, lambda out: render.files_checked(out, checked),
                 exit_code=0 if checked["ok"] else 1), as_json)


def repair(
    ctx: typer.Context,
    what: str = typer.Argument(..., metavar="bus",
                               help="bus: its event log (the only thing repair rebuilds)"),
    as_json: bool = json_option(),
) -> None:
    """Rebuild the bus's damaged or lost log from the services' outboxes.

    The bus must be stopped. The damaged bus.db is moved aside (kept); the new log holds
    every event an outbox sent, at its position, under a new identity; then the bus starts
    and the read model is rebuilt. Says which positions could not be recovered.

    \b
    Example: msshop repair bus
    """
    from msshop import render
    from msshop.instruments.repair import repair_bus

    if what != "bus":
        raise UsageError(f"repair rebuilds the bus's log only: msshop repair bus (not "
                         f"{what!r}); for a service's own file see: msshop check {what}")
    report = repair_bus(settings(ctx))
    emit(Outcome(report, lambda out: render.repair_report(out, report)), as_json)
