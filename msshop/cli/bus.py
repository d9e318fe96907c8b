"""The bus and what reads it: the event log (events), a read model rebuilt from it
(replay), and the events the read model could not apply (deadletters)."""

from __future__ import annotations

from functools import partial

import typer

from msshop.cli.app import settings, until_stopped
from msshop.cli.emit import Outcome, emit, emit_each
from msshop.cli.options import json_option
from msshop.cli.shop import client
from msshop.contracts.limits import MAX_ID


def events(
    ctx: typer.Context,
    after: int = typer.Option(0, "--after", min=0, max=MAX_ID,
                              help="Start after this bus position."),
    limit: int = typer.Option(50, "--limit", min=1, max=10000,
                              help="How many events (without --follow)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
    as_json: bool = json_option("One JSON object a line, each event whole (docs/cli.md)."),
) -> None:
    """Show the bus's event log.

    \b
    Example: msshop events --after 100 --limit 20
    """
    from msshop import render

    bus = client(ctx).bus()  # first: with no sandbox, say so before importing the bus's client
    from msshop.instruments import event_pager  # asyncio and msgspec: ~25 ms

    with until_stopped(follow):  # Ctrl-C ends --follow
        emit_each((Outcome(render.event_on_the_bus(position, event),
                           partial(render.event_line, position=position, event=event))
                   for position, event in event_pager.read(bus, after, limit, follow)),
                  as_json)


def replay(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="query: the service with a read model"),
    as_json: bool = json_option(),
) -> None:
    """Rebuild a read model from the whole bus log, then swap it in.

    \b
    Example: msshop replay query
    """
    from msshop import render
    from msshop.instruments.replay import replay as rebuild

    result = rebuild(settings(ctx), service)
    emit(Outcome(result, lambda out: render.replay_summary(out, result)), as_json)


def deadletters(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", min=1, max=10000, help="How many, newest first."),
    as_json: bool = json_option(),
) -> None:
    """Events the read model could not apply, and why.

    \b
    Example: msshop deadletters --limit 10
    """
    from msshop import render

    page = client(ctx).dead_letters(limit)
    emit(Outcome(page, lambda out: render.dead_letters(out, page)), as_json)
