"""The sandbox: start it, stop it, look at it (status, inspect, logs), wait for it, and
stop, start or kill one of its services."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import typer

from msshop.cli.app import flags, settings, until_stopped
from msshop.cli.emit import Outcome, emit, emit_each
from msshop.cli.options import SERVICE_HELP, json_option
from msshop.contracts.errors import MsshopError, UsageError

if TYPE_CHECKING:
    from msshop.render import Console


def up(
    ctx: typer.Context,
    detach: bool = typer.Option(False, "--detach", "-d",
                                help="Return once all services are healthy."),
    bus: str | None = typer.Option(
        None, "--bus", metavar="log|nats",
        help="What carries the events: msshop's own log, or NATS JetStream "
             "[env MSSHOP_BUS_BACKEND; default log]."),
    bus_nodes: int | None = typer.Option(
        None, "--bus-nodes", metavar="N",
        help="nats: how many clustered nats-servers to start, 1, 3 or 5 "
             "[env MSSHOP_BUS_NODES; default 1]."),
    programs: list[str] | None = typer.Option(
        None, "--service", metavar="NAME='CMD'",
        help="Run your own program as that service instead of msshop's, e.g. "
             "query='python3 d.py'; repeatable [env MSSHOP_<NAME>_COMMAND]."),
    ui: bool = typer.Option(
        False, "--ui", help="Also start the live dashboard; msshop ui prints its address "
                            "and login [env MSSHOP_UI]."),
    wait_for: str | None = typer.Option(
        None, "--wait", metavar="healthy|caught-up",
        help="With --detach: then wait until this holds: healthy (what --detach does "
             "anyway) or caught-up (replication done, up to 60 s)."),
    as_json: bool = json_option("With --detach: print where everything runs as JSON."),
) -> None:
    """Start the services.

    \b
    Example: msshop up --detach --bus nats
    """
    from msshop import render
    from msshop.contracts.topology import DASHBOARD
    from msshop.instruments import dashboard, waiting
    from msshop.runtime.orchestrator import lifecycle

    if wait_for is not None:  # before anything starts: the first mistake first
        if not detach:
            raise UsageError("--wait goes with --detach (a foreground up runs until "
                             f"Ctrl-C); use: msshop up --detach --wait {wait_for}")
        with flags(condition="--wait"):
            waiting.check_up_wait(wait_for)
    if as_json and not detach:
        raise UsageError("--json goes with --detach (in the foreground, up shows a live "
                         "table until Ctrl-C)")
    config = settings(ctx, **{"bus.backend": bus, "bus.nodes": bus_nodes,
                              "ui.enabled": True if ui else None},
                      **service_commands(programs or []))
    console = render.terminal()
    started = time.perf_counter()
    if not detach:
        lifecycle.up_foreground(
            config, render.LivePrinter(console),
            on_ready=lambda state: render.ready(console, state, time.perf_counter() - started))
        render.foreground_end(console)
        return
    state, notes = lifecycle.up_detached(config)
    took = time.perf_counter() - started

    def draw_up(out: Console) -> None:
        render.up_detached(out, state, took, notes)
        if DASHBOARD.name in state.services:  # its login, for the person who asked for it
            render.dashboard_address(out, dashboard.address(state))

    up_outcome = Outcome(render.sandbox_up(state, took, notes), draw_up)
    if wait_for is None:
        emit(up_outcome, as_json)
        return
    if not as_json:  # a person hears that it is up before the wait begins
        emit(up_outcome, as_json)
    from msshop.contracts.waiting import EXIT_CODES

    report = waiting.wait(config, [], wait_for, waiting.UP_TIMEOUT)
    emit(Outcome({**up_outcome.document, "waited": report},
                 lambda out: render.wait_report(out, report),
                 exit_code=EXIT_CODES[report["outcome"]]), as_json)


def service_commands(programs: list[str]) -> dict[str, str]:
    """--service NAME='CMD', each as the setting services.NAME.command."""
    from msshop.contracts.topology import NAMES

    commands = {}
    for program in programs:
        name, equals, command = program.partition("=")
        if not equals or not command.strip():
            raise UsageError(f"--service {program!r} names no command; use --service "
                             "NAME='PROGRAM ARGS', e.g. --service query='python3 d.py'")
        if name not in NAMES:
            raise UsageError(f"--service {name}=...: unknown service '{name}'; choose one "
                             "of: " + ", ".join(NAMES))
        commands[f"services.{name}.command"] = command
    return commands


def down(ctx: typer.Context, as_json: bool = json_option()) -> None:
    """Stop every service and the supervisor.

    \b
    Example: msshop down
    """
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    state = lifecycle.down(settings(ctx))
    emit(Outcome(render.sandbox_down(state), lambda out: render.shutdown(out, state)), as_json)


def status(ctx: typer.Context, as_json: bool = json_option("Print JSON for scripts.")) -> None:
    """Show each service's pid, port, health, rows and database.

    \b
    Example: msshop status
    """
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    config = settings(ctx)
    try:
        report = lifecycle.status(config)
    except MsshopError as exc:
        emit(Outcome(render.status_unknown(str(config.sandbox_dir), exc.message),
                     _raising(exc), exit_code=exc.exit_code, layout="inline"), as_json)
        return
    emit(Outcome(report, lambda out: render.status(out, report)), as_json)


def _raising(error: MsshopError) -> Callable[[Console], None]:
    """A drawing that is the error's line (a person reads it as any error)."""

    def draw(_: Console) -> None:
        raise error

    return draw


def inspect(
    ctx: typer.Context,
    service: str | None = typer.Argument(
        None, metavar="[SERVICE]",
        help="bus, users, products, orders or query [default: every one]"),
    table: str | None = typer.Option(None, "--table", metavar="T",
                                     help="Show the first rows of this table of SERVICE."),
    limit: int | None = typer.Option(None, "--limit", metavar="N",
                                     help="With --table: how many rows, 1 to 1000 "
                                          "[default 10]."),
    as_json: bool = json_option("Print it as JSON."),
) -> None:
    """Look into each service's own database, read-only.

    Tables, rows, bytes, schemas, and what replication costs in space. The operator looking,
    not a service (no service opens another's file); works whether or not the sandbox runs.

    \b
    Example: msshop inspect orders --table orders --limit 3
    """
    from msshop import render
    from msshop.contracts.inspection import DEFAULT_ROW_LIMIT
    from msshop.instruments import inspection

    if table is None:
        if limit is not None:
            raise UsageError("--limit N goes with --table T")
        found = inspection.inspect(settings(ctx), service)
        emit(Outcome(found, lambda out: render.database_overview(out, found)), as_json)
        return
    if service is None:
        raise UsageError(f"--table {table} needs the service whose database holds it, "
                         f"e.g.: msshop inspect orders --table {table}")
    with flags():
        rows = inspection.table_rows(settings(ctx), service, table,
                                     DEFAULT_ROW_LIMIT if limit is None else limit)
    emit(Outcome(rows, lambda out: render.table_rows(out, rows)), as_json)


def logs(
    ctx: typer.Context,
    service: str | None = typer.Argument(None, help=f"{SERVICE_HELP} or supervisor"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int | None = typer.Option(
        None, "--lines", "-n",
        help="How many recent lines; 0 = all [default 40; with --since all]."),
    since: str | None = typer.Option(
        None, "--since", metavar="DURATION|HH:MM[:SS]",
        help="Only lines since then: 30s, 5m, 2h ago, or a clock time today."),
    grep: str | None = typer.Option(None, "--grep", metavar="REGEX",
                                    help="Only lines this regular expression matches."),
    no_prefix: bool = typer.Option(False, "--no-prefix",
                                   help="Each line as written, without the service column."),
    as_json: bool = json_option(
        'One JSON object per line: {"service", "time", "level", "message", "line"}.'),
) -> None:
    """Print the services' logs, merged by time.

    \b
    Example: msshop logs orders --follow
    """
    from msshop import render
    from msshop.runtime.orchestrator import service_logs

    with flags():
        shown = service_logs.view(settings(ctx), service, lines, follow, since, grep)
    width = None if no_prefix else max(len(name) for name in shown.names)
    with until_stopped(follow):  # Ctrl-C ends --follow; it is how one stops it
        emit_each((Outcome(render.log_record(entry),
                           partial(render.log_entry, entry=entry, width=width))
                   for entry in shown.lines), as_json)


def wait(
    ctx: typer.Context,
    services: list[str] | None = typer.Argument(
        None, metavar="[SERVICE]...", help=f"{SERVICE_HELP} [default: every one]"),
    condition: str = typer.Option(
        "healthy", "--for", metavar="healthy|caught-up|down",
        help="Running and healthy; replication done (outboxes empty, the read model at "
             "the bus's head); or stopped (no service named: no sandbox running)."),
    timeout: float = typer.Option(60.0, "--timeout", metavar="S",
                                  help="Give up after S seconds, 0 to 3600."),
    as_json: bool = json_option("Print the outcome as JSON."),
) -> None:
    """Wait until services are healthy, caught up or down.

    Exit 0 when it holds; 1 no sandbox, or a service crashed; 2 bad usage; 3 timed out.

    \b
    Example: msshop wait --for caught-up
    """
    from msshop import render
    from msshop.contracts.waiting import EXIT_CODES
    from msshop.instruments import waiting

    with flags(condition="--for"):
        report = waiting.wait(settings(ctx), services or [], condition, timeout)
    emit(Outcome(report, lambda out: render.wait_report(out, report),
                 exit_code=EXIT_CODES[report["outcome"]]), as_json)


def stop(ctx: typer.Context, service: str = typer.Argument(..., help=SERVICE_HELP),
         as_json: bool = json_option()) -> None:
    """Stop one service (the others keep running).

    \b
    Example: msshop stop products
    """
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    lifecycle.command(settings(ctx), "stop", service)
    emit(Outcome(render.service_changed(service, "stopped", "stopped"),
                 lambda out: render.stop_note(out, service)), as_json)


def start(ctx: typer.Context, service: str = typer.Argument(..., help=SERVICE_HELP),
          as_json: bool = json_option()) -> None:
    """Start a stopped or crashed service.

    \b
    Example: msshop start products
    """
    _start(ctx, service, as_json, restart=False)


def restart(ctx: typer.Context, service: str = typer.Argument(..., help=SERVICE_HELP),
            as_json: bool = json_option()) -> None:
    """Stop and start one service.

    \b
    Example: msshop restart orders
    """
    _start(ctx, service, as_json, restart=True)


def _start(ctx: typer.Context, service: str, as_json: bool, restart: bool) -> None:
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    ready_ms, health = lifecycle.start(settings(ctx), service, restart=restart)
    emit(Outcome(
        render.service_changed(service, "restarted" if restart else "started", "running",
                               ready_ms=ready_ms, health=health),
        lambda out: render.start_note(out, service, ready_ms, health, restarted=restart)),
        as_json)


def kill(ctx: typer.Context, service: str = typer.Argument(..., help=SERVICE_HELP),
         as_json: bool = json_option()) -> None:
    """SIGKILL one service, as a crash would.

    \b
    Example: msshop kill products
    """
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    state = lifecycle.kill(settings(ctx), service)
    ended = state.services[service]
    emit(Outcome(render.service_changed(service, "killed", ended.status, exit=ended.exit),
                 lambda out: render.kill_note(out, service, state)), as_json)


def ui(ctx: typer.Context, as_json: bool = json_option()) -> None:
    """Print the live dashboard's address, with a login token.

    Starts the dashboard first if the running sandbox has it stopped, or was started
    without it (up --ui starts it with the sandbox).

    \b
    Example: msshop ui
    """
    from msshop import render
    from msshop.instruments import dashboard

    address = dashboard.served(settings(ctx))
    emit(Outcome(address, lambda out: render.dashboard_address(out, address)), as_json)

