"""The typer app, its global options, and what every command reaches for: the settings and
the one way a MsshopError leaves the command line (a line on stderr and its exit code)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer

from msshop.contracts.config import Settings, load
from msshop.contracts.errors import InvalidArgument, MsshopError, UsageError

app = typer.Typer(
    name="msshop",
    help="A shop split into microservices, to see, measure and teach how they share data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main_options(
    ctx: typer.Context,
    sandbox: Path | None = typer.Option(
        None, "--sandbox", metavar="DIR",
        help="Where the sandbox lives [env MSSHOP_SANDBOX; default ./sandbox]."),
    base_port: int | None = typer.Option(
        None, "--base-port", metavar="N",
        help="First port; 0 picks free ports [env MSSHOP_BASE_PORT; default 7100]."),
    config: Path | None = typer.Option(
        None, "--config", metavar="FILE", help="A settings file [env MSSHOP_CONFIG]."),
) -> None:
    ctx.obj = {"sandbox.dir": sandbox, "sandbox.base_port": base_port, "config": config}


def settings(ctx: typer.Context, **overrides: Any) -> Settings:
    """Defaults <- config file <- environment <- the global flags <- this command's flags."""
    options: dict[str, Any] = dict(ctx.find_root().obj or {})
    config = options.pop("config", None)
    return load(config_file=config, overrides={**options, **overrides})


def as_flag(parameter: str) -> str:
    """The flag that sets a library function's parameter: its name, dashed."""
    return "--" + parameter.replace("_", "-")


def fail(error: MsshopError) -> NoReturn:
    from msshop import render

    if isinstance(error, InvalidArgument):  # said with the flags a person typed
        error = UsageError(error.worded(as_flag))
    render.error(error.message)
    sys.exit(error.exit_code)


def main() -> None:
    try:
        app()
    except MsshopError as exc:
        fail(exc)


@contextmanager
def flags(**names: str) -> Iterator[None]:
    """Within: an InvalidArgument from the library is a usage error in this command's
    flags (`names`: parameter -> flag, where the flag is not the parameter's name dashed)."""
    try:
        yield
    except InvalidArgument as exc:
        raise UsageError(exc.worded(lambda p: names.get(p) or as_flag(p))) from None


@contextmanager
def until_stopped(following: bool) -> Iterator[None]:
    """Within, when `following`: Ctrl-C (SIGINT) or SIGTERM ends the block quietly, the
    command then exiting 0 as Ctrl-C always ended a follow. Started from a shell's
    background job (`msshop logs -f &`), a process inherits SIGINT ignored, and Python then
    leaves it so: Ctrl-C, or `kill -INT`, would never reach it. So both signals are given
    Python's own SIGINT handler (a KeyboardInterrupt; asyncio's runner, seeing it, cancels
    its task cleanly) for as long as the follow lasts."""
    if not following:
        yield
        return
    stopping = (signal.SIGINT, signal.SIGTERM)
    before = {number: signal.signal(number, signal.default_int_handler) for number in stopping}
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
