"""`msshop bench`: every strategy measured in a throw-away sandbox."""

from __future__ import annotations

import typer

from msshop.cli.app import settings
from msshop.cli.emit import Outcome, emit
from msshop.cli.options import json_option


def bench(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="Fewer requests and data: about 20 s."),
    as_json: bool = json_option("Print the report as JSON."),
    bus: str | None = typer.Option(
        None, "--bus", metavar="log|nats|log,nats",
        help="The bus backend(s) to measure; several: one after the other, side by side "
             "[default: bus.backend]."),
) -> None:
    """Measure every strategy in a throw-away sandbox.

    \b
    Example: msshop bench --quick
    """
    from msshop import render
    from msshop.instruments.bench import measure

    config = settings(ctx)
    backends = [settings(ctx, **{"bus.backend": b.strip()}).bus_backend
                for b in (bus or config.bus_backend).split(",")]
    progress_to = render.terminal(stderr=as_json)  # the JSON alone on stdout
    reports = measure.run_each(config, backends, quick,
                               say=lambda message: render.bench_progress(progress_to, message))
    if len(reports) == 1:
        report = reports[0]
        emit(Outcome(report, lambda out: render.bench_report(out, report)), as_json)
    else:
        emit(Outcome(reports, lambda out: render.bench_side_by_side(out, reports)), as_json)
