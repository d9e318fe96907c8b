"""The question of the lesson, "which products did user U order?": asked by one strategy
(query), by all side by side (compare), and the read model checked whole (verify)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from msshop.cli.app import flags, settings
from msshop.cli.emit import Outcome, emit
from msshop.cli.options import check_view, json_option, read_strategy, view_option
from msshop.contracts.limits import MAX_ID
from msshop.contracts.strategies import ReadStrategy

if TYPE_CHECKING:
    from msshop.instruments.asking import Questioner


def questioner(ctx: typer.Context) -> Questioner:
    from msshop.instruments.asking import Questioner
    from msshop.runtime.orchestrator import lifecycle

    return Questioner(lifecycle.running_state(settings(ctx)))


def query(
    ctx: typer.Context,
    user: int = typer.Option(..., "--user", min=1, max=MAX_ID,
                             help="The user whose orders to list."),
    strategy: ReadStrategy = typer.Option(
        ReadStrategy.REPLICATED.value, "--strategy", parser=read_strategy,
        metavar="|".join(ReadStrategy),
        help="How it is answered (docs/cli.md says how each works)."),
    fanout: str = typer.Option("batched", "--fanout",
                               help="direct-call only: batched, or naive (one call per order)."),
    after: int = typer.Option(0, "--after", min=0, max=MAX_ID, metavar="POSITION",
                              help="replicated: first wait until this bus position is applied."),
    wait_ms: int = typer.Option(2000, "--wait-ms", min=0, max=30000,
                                help="How long --after may wait."),
    partial: bool = typer.Option(False, "--partial",
                                 help="direct-call: answer with what could be had."),
    as_json: bool = json_option("Answer, spans and freshness as JSON."),
    view: str = view_option(),
) -> None:
    """Which products did a user order?

    \b
    Example: msshop query --user 42 --strategy replicated
    """
    from msshop import render

    check_view(view)
    with flags():
        asked = questioner(ctx).ask(user, strategy, fanout, after, wait_ms, partial)
    emit(Outcome(render.query_answer(asked),
                 lambda out: render.answer_with_trace(out, asked, view)), as_json)


def compare(
    ctx: typer.Context,
    user: int = typer.Option(..., "--user", min=1, max=MAX_ID,
                             help="The user whose orders to list."),
    as_json: bool = json_option(),
) -> None:
    """Every strategy side by side, against the monolith.

    \b
    Example: msshop compare --user 42
    """
    from msshop import render
    from msshop.instruments import checking

    rows = checking.compare(questioner(ctx), user)
    emit(Outcome(render.comparison(user, rows), lambda out: render.compare(out, user, rows)),
         as_json)


def verify(ctx: typer.Context, as_json: bool = json_option()) -> None:
    """Check the replicated read model against the monolith join, and the invariant.

    \b
    Example: msshop verify
    """
    from msshop import render
    from msshop.instruments import checking

    report = checking.verify(questioner(ctx))
    emit(Outcome(render.verification(report), lambda out: render.verify(out, report),
                 exit_code=0 if report.ok else 1), as_json)
