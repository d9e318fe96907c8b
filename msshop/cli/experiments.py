"""`msshop experiment`: load and faults over time, charted, checked, with a verdict."""

from __future__ import annotations

from pathlib import Path

import typer

from msshop.cli.app import flags, settings
from msshop.cli.emit import Outcome, emit
from msshop.cli.options import json_option
from msshop.contracts.errors import UsageError


def experiment(
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., metavar="NAME",
        help="Reads: products-outage, slow-users, bus-outage, bus-pause, partition, "
             "query-crash, duplicates. Purchases: writes-products-outage, writes-crashes, "
             "writes-last-items, writes-duplicates, writes-credit-runs-out, "
             "writes-slow-users. Or a scenario .toml file."),
    seconds: float | None = typer.Option(
        None, "--seconds", metavar="N",
        help="Run the schedule squeezed or stretched to N seconds [default: the scenario's]."),
    rate: float | None = typer.Option(
        None, "--rate", metavar="R",
        help="Reads per second by each strategy, purchases in proportion (a purchases "
             "scenario: its purchases per second by each strategy) [default: the "
             "scenario's]."),
    bus: str | None = typer.Option(None, "--bus", metavar="log|nats",
                                   help="The bus backend [default: bus.backend]."),
    as_json: bool = json_option("Print the report as JSON."),
    report_dir: Path | None = typer.Option(
        None, "--report", metavar="DIR",
        help="Also write DIR/index.html (the charts, offline) and DIR/report.json."),
    sandbox: Path | None = typer.Option(
        None, "--sandbox", metavar="DIR",
        help="Run in the sandbox running at DIR (left running) instead of a throw-away one."),
    progress_file: Path | None = typer.Option(
        None, "--progress", metavar="FILE",
        help="Also append each line said and each second's answered and failed requests "
             "to FILE as JSON lines, as the run goes (the dashboard follows it)."),
) -> None:
    """Run load and faults over time; chart, check, give a verdict.

    Charts each strategy's reads over time; exit 0 valid, 1 invalid, 2 unknown.

    \b
    Example: msshop experiment products-outage
    """
    import contextlib

    from msshop import render
    from msshop.instruments.experiments import page, run
    from msshop.instruments.experiments.progress import ProgressFile
    from msshop.instruments.experiments.report import EXIT_CODES

    if sandbox is not None and bus is not None:
        raise UsageError("--bus: the sandbox at --sandbox runs on the bus it was started "
                         "with; leave out --bus")
    config = settings(ctx, **{"bus.backend": bus})
    with flags(report="--report DIR"):
        scenario = run.scenario(name, seconds, rate)
        made = page.make_room(report_dir) if report_dir is not None else []
    progress_to = render.terminal(stderr=as_json)  # the JSON alone on stdout
    with page.taken_back_on_failure(made), contextlib.ExitStack() as closing:
        with flags(progress="--progress FILE"):
            progress = (closing.enter_context(ProgressFile(progress_file))
                        if progress_file is not None else None)
        report = run.run(config, scenario, sandbox,
                         say=lambda message: render.experiment_progress(progress_to, message),
                         progress=progress)
        if report_dir is not None:
            with flags(report="--report DIR"):
                written = page.write_report(report, report_dir)
            render.report_files(progress_to, written)
    if report["workload"] == "purchases":  # every write strategy side by side
        writes = report
        emit(Outcome(writes, lambda out: render.write_experiment(out, writes),
                     exit_code=EXIT_CODES[writes["verdict"]]), as_json)
        return
    reads = report
    emit(Outcome(reads, lambda out: render.experiment(out, reads),
                 exit_code=EXIT_CODES[reads["outcome"]["verdict"]]), as_json)
