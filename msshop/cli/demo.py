"""`msshop demo`: a scripted demo in a sandbox of its own, step by step."""

from __future__ import annotations

import sys

import typer

from msshop.cli.app import flags, settings


def demo(
    ctx: typer.Context,
    name: str = typer.Argument(
        "lesson", help="lesson, outage, lag, replay, broker, isolation or tradeoffs."),
    no_pause: bool = typer.Option(False, "--no-pause",
                                  help="Run straight through, for recording and CI."),
    speed: float = typer.Option(1.0, "--speed", metavar="FACTOR",
                                help="With --no-pause: shorter (>1) or longer (<1) pauses."),
    programs: list[str] | None = typer.Option(
        None, "--service", metavar="NAME='CMD'",
        help="Run the demo with your own program as that service, e.g. "
             "query='python3 d.py'; repeatable [env MSSHOP_<NAME>_COMMAND]."),
) -> None:
    """Run a scripted demo in a sandbox of its own.

    \b
    Example: msshop demo outage --no-pause
    """
    from msshop import render
    from msshop.cli.sandbox import service_commands
    from msshop.instruments import demo as demos

    commands = settings(ctx, **service_commands(programs or [])).commands
    console = render.terminal()
    pause = not no_pause and sys.stdin.isatty()  # nobody to press Enter: run straight through
    with flags():
        steps = demos.run(name, pause, speed, render.DemoStage(console), commands)
    render.demo_summary(console, name, steps)
