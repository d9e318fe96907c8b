"""Faults on purpose: a slow or failing service or link (chaos), a service reaching into
another's file (trespass), an event no read model can apply (poison)."""

from __future__ import annotations

import typer

from msshop.cli.app import flags, settings
from msshop.cli.emit import Outcome, emit
from msshop.cli.options import json_option


def chaos(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="bus, users, products, orders or query"),
    to: str | None = typer.Option(
        None, "--to", metavar="CALLEE",
        help="Act on this service's calls to CALLEE only (a link), not on what it answers."),
    latency: float = typer.Option(0, "--latency", metavar="MS",
                                  help="Delay every request (--to: call) by this many ms, "
                                       "0..60000."),
    jitter: float = typer.Option(0, "--jitter", metavar="MS",
                                 help="Add a random 0..MS ms on top."),
    error_rate: float = typer.Option(0, "--error-rate", metavar="P",
                                     help="Answer 503 to this share of requests (0..1); "
                                          "--to: fail that share of calls (1: a partition)."),
    duplicate_rate: float = typer.Option(
        0, "--duplicate-rate", metavar="P",
        help="With --to bus: hand this share of the events read over again, later and out "
             "of order (0..1)."),
    reorder_rate: float = typer.Option(
        0, "--reorder-rate", metavar="P",
        help="With --to bus: hand this share of a page's products (or users) with several "
             "updates in it those updates newest first (0..1)."),
    redeliver_rate: float = typer.Option(
        0, "--redeliver-rate", metavar="P",
        help="With --to bus: hand this share of the events read over again once, at the "
             "start of a later page (0..1)."),
    clear: bool = typer.Option(False, "--clear",
                               help="Remove every fault (with --to: that link's)."),
    as_json: bool = json_option("Print the answer as JSON."),
) -> None:
    """Make a service slow or failing, or only its calls to another.

    \b
    Example: msshop chaos products --latency 300
    """
    from msshop import render
    from msshop.instruments import chaos as faults

    with flags(latency_ms="--latency", jitter_ms="--jitter"):
        answer = faults.inject(settings(ctx), service, latency, jitter, error_rate, clear, to,
                               duplicate_rate, reorder_rate, redeliver_rate)
    emit(Outcome(answer, lambda out: render.chaos(out, service, answer, to)), as_json)


def trespass(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="users, products, orders or query"),
    into: str = typer.Option(..., "--into", metavar="SERVICE",
                             help="The service whose database file it tries to open."),
    as_json: bool = json_option("Print the answer as JSON."),
) -> None:
    """Make a service open another's database, and see it refused.

    \b
    Example: msshop trespass users --into orders
    """
    from msshop import render
    from msshop.instruments import chaos as faults

    with flags():
        answer = faults.trespass(settings(ctx), service, into)
    broken = answer.get("held") is False  # a program of your own opened the file
    emit(Outcome(answer, lambda out: render.trespass_refusal(out, answer),
                 exit_code=1 if broken else 0,
                 complaint=render.trespass_broken(answer) if broken else None), as_json)


def poison(ctx: typer.Context, as_json: bool = json_option("Print its position as JSON.")
           ) -> None:
    """Put an event no read model can apply on the bus.

    \b
    Example: msshop poison
    """
    from msshop import render
    from msshop.instruments import chaos as faults

    position = faults.poison(settings(ctx))
    emit(Outcome(render.poison_event(position), lambda out: render.poison_note(out, position)),
         as_json)
