"""`msshop challenge`: the ladder of challenges, one of them shown, or one (or all of them,
`run all`) run against a program of your own."""

from __future__ import annotations

from pathlib import Path

import typer

from msshop.cli.app import flags, settings
from msshop.cli.emit import Outcome, emit
from msshop.cli.options import json_option
from msshop.contracts.errors import UsageError

ACTIONS = ("list", "show", "run")


def challenge(
    ctx: typer.Context,
    action: str = typer.Argument(..., metavar="list|show|run",
                                 help="list the ladder, show one challenge, or run it"),
    name: str | None = typer.Argument(None, metavar="NAME",
                                      help="the challenge (show, run): see msshop "
                                           "challenge list; run all: the whole ladder"),
    service: str | None = typer.Option(
        None, "--service", metavar="'CMD'",
        help="run: your program as the query service [default: msshop's own]."),
    bus: str | None = typer.Option(None, "--bus", metavar="log|nats",
                                   help="run: the bus backend [default: bus.backend]."),
    seconds: float | None = typer.Option(
        None, "--seconds", metavar="N",
        help="run: the timed parts squeezed or stretched to N seconds [default: 10]."),
    report_dir: Path | None = typer.Option(
        None, "--report", metavar="DIR",
        help="run: also write DIR/index.html and DIR/report.json."),
    as_json: bool = json_option(),
) -> None:
    """The challenges: build Service D rung by rung, each graded with a verdict.

    Progress is kept in .msshop-challenges.json here; exit 0 passed, 1 failed, 2 unknown
    (run all: 1 if any rung failed, else 2 if any could not tell).

    \b
    Example: msshop challenge run direct-call --service 'python3 d/service.py'
    Example: msshop challenge run all --service 'python3 d/service.py'
    """
    from msshop import render
    from msshop.instruments.challenges import ladder, page, progress, run
    from msshop.instruments.challenges.findings import EXIT_CODES

    if action not in ACTIONS:
        raise UsageError(f"msshop challenge {action!r}: choose one of: {', '.join(ACTIONS)}")
    running = {"--service": service, "--bus": bus, "--seconds": seconds,
               "--report": report_dir}
    if action != "run" and (given := [flag for flag, v in running.items() if v is not None]):
        raise UsageError(f"{', '.join(given)}: only msshop challenge run takes it")
    if action == "list":
        if name is not None:
            raise UsageError(f"msshop challenge list takes no NAME; to see one: msshop "
                             f"challenge show {name}")
        listed = ladder.ladder(progress.read(), progress.PROGRESS_FILE)
        emit(Outcome(listed, lambda out: render.challenge_list(out, listed)), as_json)
        return
    if name is None:
        raise UsageError(f"msshop challenge {action} needs a NAME; choose one of: "
                         + ", ".join(ladder.BY_NAME) + (f" (or {run.ALL}: the whole "
                                                        "ladder)" if action == "run" else ""))
    if action == "show":
        shown = ladder.shown(name, progress.read())
        emit(Outcome(shown, lambda out: render.challenge_show(out, shown)), as_json)
        return
    if name != run.ALL:
        ladder.challenge(name)  # an unknown NAME is said before anything starts
    config = settings(ctx, **{"bus.backend": bus})
    with flags(report="--report DIR"):
        made = page.make_room(report_dir) if report_dir is not None else []
    progress_to = render.terminal(stderr=as_json)  # the JSON alone on stdout
    if name == run.ALL:
        with page.taken_back_on_failure(made):
            climbed = run.run_ladder(
                config, service, seconds,
                say=lambda message: render.challenge_progress(progress_to, message),
                ran=lambda rung: render.challenge_rung(progress_to, rung))
            if report_dir is not None:
                with flags(report="--report DIR"):
                    written = page.write_ladder(climbed, report_dir)
                render.report_files(progress_to, written[:2])
        emit(Outcome(climbed, lambda out: render.challenge_ladder(out, climbed),
                     exit_code=EXIT_CODES[climbed["verdict"]]), as_json)
        return
    with page.taken_back_on_failure(made):
        report = run.run(config, name, service, seconds,
                         say=lambda message: render.challenge_progress(progress_to, message))
        if report_dir is not None:
            with flags(report="--report DIR"):
                written = page.write_report(report, report_dir)
            render.report_files(progress_to, written)
    emit(Outcome(report, lambda out: render.challenge_result(out, report),
                 exit_code=EXIT_CODES[report["verdict"]]), as_json)
